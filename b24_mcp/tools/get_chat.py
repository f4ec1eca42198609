"""get_chat: one chat as the bot sees it (imbot.v2.Chat.get)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ..bitrix24.models import Chat, reported
from . import arguments as args
from .quoting import count, named, said
from .spec import BOT_ARGS, ERRORS, Call, ChatResource, Portal, PortalAnswer, ToolSpec, Values, ask

if TYPE_CHECKING:
    from ..bitrix24.client import B24Client, OnWait


class ChatResult(BaseModel):
    """imbot.v2.Chat.get's result (a portal puts its popup data, recentConfig, beside the chat)."""

    model_config = ConfigDict(extra="allow", strict=True)
    chat: Chat


def _answer(portal: Portal, params: dict[str, Any], oauth_call: bool) -> PortalAnswer:
    dialog = portal.chat_of_call(params, oauth_call)
    if not isinstance(dialog, str):
        return dialog
    chat = portal.chats[dialog]
    return portal.ok({"recentConfig": {"chatId": chat["id"], "sections": ["default"]}, "chat": chat})


CHAT_GET = Call("imbot.v2.Chat.get", ChatResult, _answer)


async def read_chat(
    client: B24Client,
    dialog_id: str,
    bot_id: int | None = None,
    bot_token: str | None = None,
    on_wait: OnWait | None = None,
) -> Chat:
    result: ChatResult
    result, report = await ask(client, CHAT_GET, {"dialogId": dialog_id}, bot_id, bot_token, on_wait)
    return reported(result.chat, report)


async def _run(client: B24Client, v: Values, on_wait: OnWait | None) -> Chat:
    return await read_chat(client, v["dialogId"], v.get("botId"), v.get("botToken"), on_wait)


def summary(chat: dict[str, Any], call: Values | None = None) -> str:
    """The chat in one line."""
    kind = "personal chat" if chat.get("messageType") == "P" or chat.get("type") == "private" else "group chat"
    name = named(chat["name"]) if chat.get("name") else "(no name)"
    parts = [f"{name} ({said(chat['dialogId'], 40)}): {kind}"]
    if chat.get("type"):
        parts[0] += f" of type {said(chat['type'], 40)}"
    if chat.get("role"):
        parts.append(f"the bot's role: {said(chat['role'], 40)}")
    counts = [count(chat[k], noun) for k, noun in (("userCounter", "member"), ("messageCount", "message")) if k in chat]
    if counts:
        parts.append(", ".join(counts))
    if chat.get("owner"):
        parts.append(f"owner: user {chat['owner']}")
    if chat.get("dateCreate"):
        parts.append(f"created {said(chat['dateCreate'], 40)}")
    if chat.get("lastMessageId"):
        parts.append(f"last message {chat['lastMessageId']}")
    return "; ".join(parts) + "."


TOOL = ToolSpec(
    name="get_chat",
    title="Get Bitrix24 chat",
    summary="What a chat is: name, type, the bot's role, counts, owner, last message id (imbot.v2.Chat.get).",
    description=f"""Get one Bitrix24 chat (REST method imbot.v2.Chat.get) as the chat bot sees it: name, \
description, type, the bot's role, member and message counts, owner, managers, creation date, last message id.

dialogId says which chat: {args.DIALOG_ID_FORM}. It appears in Bitrix24 chat links (…/online/?IM_DIALOG=chat5) and \
in bot events (DIALOG_ID). The bot must be a participant of the chat; otherwise Bitrix24 answers ACCESS_DENIED \
and someone has to add the bot to the chat first.

{BOT_ARGS}

Returns the Chat object as structured content, with Bitrix24's own field names, plus a one-line summary. \
{ERRORS.format(extra="")} Example: get_chat(dialogId="chat5").""",
    args=[args.DIALOG_ID, *args.BOT],
    output=Chat,
    run=_run,
    render=summary,
    calls=[CHAT_GET],
    json_block=True,
    resource=ChatResource("", "bitrix24-chat", "Bitrix24 chat", "A Bitrix24 chat as JSON (get_chat's fields)"),
)

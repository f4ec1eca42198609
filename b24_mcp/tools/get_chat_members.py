"""get_chat_members: who is in a chat (imbot.v2.Chat.User.list)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from ..bitrix24.models import NotAsDocumented, Ours, User, not_as_documented, notice_field, reported, shaped
from . import arguments as args
from .quoting import count, person, said
from .spec import (
    BOT_ARGS,
    ERRORS,
    Call,
    ChatResource,
    Fits,
    Portal,
    PortalAnswer,
    ToolSpec,
    Values,
    ask,
    given,
    most_that_fit,
)

if TYPE_CHECKING:
    from ..bitrix24.client import B24Client, OnWait


class Members(BaseModel):
    """get_chat_members: imbot.v2.Chat.User.list's User[] (an MCP result must be an object, so it is wrapped)."""

    model_config = shaped("ChatMembers")

    notice: Annotated[str, Ours] = notice_field()
    dialogId: str = Field(description="The chat asked about")
    users: list[User] = Field(description="The members, in the order asked for")

    notAsDocumented: NotAsDocumented = not_as_documented()


def _answer(portal: Portal, params: dict[str, Any], oauth_call: bool) -> PortalAnswer:
    dialog = portal.chat_of_call(params, oauth_call)
    if not isinstance(dialog, str):
        return dialog
    joined = portal.members[dialog]
    chat_id = portal.chats[dialog]["id"]
    last_sent = {uid: 0 for uid in joined}
    for message in portal.messages.values():
        if message["chatId"] == chat_id and message["authorId"] in last_sent:
            last_sent[message["authorId"]] = max(last_sent[message["authorId"]], message["id"])
    keys: dict[str, Callable[[int], int]] = {
        "id": joined.index,
        "userId": lambda uid: uid,
        "lastSendMessageId": last_sent.__getitem__,
    }
    field, descending = "id", False  # an unknown field or direction falls back to joining order
    order = params.get("order")
    if isinstance(order, dict):
        for name, direction in order.items():
            if name in args.MEMBER_ORDER_FIELDS and str(direction).upper() in ("ASC", "DESC"):
                field, descending = name, str(direction).upper() == "DESC"
                break
    ordered = sorted(joined, key=keys[field], reverse=descending)
    limit = portal.bounded(params.get("limit"), 1, args.MEMBERS_LIMIT_MAX, args.MEMBERS_LIMIT_DEFAULT)
    return portal.ok([portal.users[uid] for uid in ordered[:limit]])


USER_LIST = Call("imbot.v2.Chat.User.list", list[User], _answer)


async def read_members(
    client: B24Client,
    dialog_id: str,
    order: dict[str, str] | None = None,
    limit: int | None = None,
    bot_id: int | None = None,
    bot_token: str | None = None,
    on_wait: OnWait | None = None,
) -> Members:
    params = {"dialogId": dialog_id, "order": order, "limit": limit}
    users: list[User]
    users, report = await ask(client, USER_LIST, given(params), bot_id, bot_token, on_wait)
    return reported(Members(dialogId=dialog_id, users=users), report)


async def _run(client: B24Client, v: Values, on_wait: OnWait | None) -> Members:
    return await read_members(
        client, v["dialogId"], v.get("order"), v.get("limit"), v.get("botId"), v.get("botToken"), on_wait
    )


def _fit(model: BaseModel, v: Values, fits: Fits) -> tuple[BaseModel, str]:
    """Over the budget: the last members are left out (Bitrix24 cannot page this list)."""
    assert isinstance(model, Members)
    total = len(model.users)
    low = most_that_fit(0, total, lambda n: fits(model.model_copy(update={"users": model.users[:n]})))
    return model.model_copy(update={"users": model.users[:low]}), (
        f"the last {count(total - low, 'member')} of {total} are not shown; Bitrix24 cannot page this list, so "
        'choose who comes first with order (e.g. {"lastSendMessageId": "DESC"}) and a smaller limit.'
    )


def listing(data: dict[str, Any], call: Values | None = None) -> str:
    """One line per member."""
    users = data["users"]
    lines = [f"{count(len(users), 'member')} of {data['dialogId']}:"]
    for user in users:
        extra = [said(user[k], 80) for k in ("workPosition", "type") if isinstance(user.get(k), str) and user[k]]
        active = "" if user.get("active", True) else ", inactive"
        lines.append(f"- {person(user, user['id'])}{': ' + ', '.join(extra) if extra else ''}{active}")
    return "\n".join(lines)


TOOL = ToolSpec(
    name="get_chat_members",
    title="List Bitrix24 chat members",
    summary="Who is in a chat: names, job titles, bots (imbot.v2.Chat.User.list).",
    description=f"""List who is in a Bitrix24 chat (REST method imbot.v2.Chat.User.list): each member's id, \
name, job title, whether they are a bot, active, their status.

dialogId: {args.DIALOG_ID_FORM}. order sorts by id, lastSendMessageId or userId, e.g. {{"id": "ASC"}}. limit: \
1–{args.MEMBERS_LIMIT_MAX} (default {args.MEMBERS_LIMIT_DEFAULT}). The bot must be a participant of the chat. \
{BOT_ARGS}

Returns {{dialogId, users: User[]}} as structured content and a list of names. {ERRORS.format(extra="")} \
Example: get_chat_members(dialogId="chat5").""",
    args=[args.DIALOG_ID, args.ORDER, args.LIMIT, *args.BOT],
    output=Members,
    run=_run,
    render=listing,
    calls=[USER_LIST],
    fit=_fit,
    resource=ChatResource(
        "/members",
        "bitrix24-chat-members",
        "Bitrix24 chat: members",
        "The members of a Bitrix24 chat as JSON (get_chat_members' fields)",
    ),
)

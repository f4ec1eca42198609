"""The shapes of what goes in and what comes out: the Chat object and the checks on `get_chat`'s arguments.

`Chat` mirrors "Objects and Fields — Chat" (chat-bots-v2/entities.md) field by field, typed as documented and
nullable where documented. Its JSON schema is the tool's `outputSchema`, and MCP clients validate
`structuredContent` against it, so it must admit whatever a real portal sends: only `id` and `dialogId` are
required, every other field is optional (absent stays absent), and fields the docs do not list yet pass
through untouched (`extra="allow"`). Opaque objects (permissions, entityLink, public) accept `[]` too,
because PHP encodes an empty array that way.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from .errors import ConfigError, InputError
from .settings import BOT_TOKEN_MAX, check_secret, parse_bot_id

# PHP's json_encode writes an empty associative array as []: only an *empty* list stands for an empty object.
EmptyArray = Annotated[list[Any], Field(max_length=0), WithJsonSchema({"type": "array", "maxItems": 0})]
Opaque = dict[str, Any] | EmptyArray


def _without_null_defaults(schema: dict[str, Any]) -> None:
    """Optional fields carry `default=None` only so that an absent field stays absent (dumped with
    exclude_unset); `"default": null` on a non-nullable field would only confuse a reader of the schema."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None:
            del prop["default"]


class Chat(BaseModel):
    """A Bitrix24 chat as imbot.v2.Chat.get returns it (result.chat)."""

    model_config = ConfigDict(extra="allow", title="Chat", json_schema_extra=_without_null_defaults)

    id: int = Field(description="Chat id, e.g. 5")
    dialogId: str = Field(description='Dialog id: "chat5" for a group chat, "123" (a user id) for a personal chat')
    name: str = Field(default=None, description="Chat name")
    description: str = Field(default=None, description="Chat description")
    type: str = Field(
        default=None,
        description="chat, open, channel, openChannel, copilot, thread, generalChannel, private, and others",
    )
    messageType: str = Field(default=None, description="C chat, O open, P private, and others")
    owner: int = Field(default=None, description="User id of the chat owner")
    color: str | None = Field(default=None, description="HEX colour, e.g. #4ba984, or null")
    avatar: str = Field(default=None, description="Avatar URL; empty string if none")
    extranet: bool = Field(default=None, description="Whether extranet users take part")
    containsCollaber: bool = Field(default=None, description="Whether collabers take part")
    role: str = Field(default=None, description="The bot's own role: owner, manager, member, guest, none")
    muteList: list[int] = Field(default=None, description="User ids who muted the chat")
    managerList: list[int] = Field(default=None, description="User ids of chat managers")
    entityType: str = Field(default=None, description="Linked object type, e.g. LINES for Open Channels")
    entityId: str = Field(default=None, description="Linked object id")
    entityData1: str = Field(default=None)
    entityData2: str = Field(default=None)
    entityData3: str = Field(default=None)
    entityLink: Opaque = Field(default=None, description="Link to the linked object; opaque")
    diskFolderId: int | None = Field(default=None, description="Drive folder of the chat's files, or null")
    permissions: Opaque = Field(default=None, description="Who may manage users, UI, settings, messages; opaque")
    parentChatId: int | None = Field(default=None, description="For threads: the parent chat id, else null or 0")
    parentMessageId: int | None = Field(default=None, description="For threads: the parent message id, else null or 0")
    isNew: bool = Field(default=None)
    textFieldEnabled: str = Field(default=None, description='"Y" or "N" (a string, not a boolean)')
    backgroundId: str | None = Field(default=None)
    dateCreate: str | None = Field(default=None, description="Creation time, ISO 8601, or null")
    lastMessageId: int | None = Field(default=None, description="Id of the last message, or null")
    lastId: int | None = Field(default=None, description="Id of the last message the bot read, or null")
    unreadId: int | None = Field(default=None)
    markedId: int | None = Field(default=None)
    lastMessageViews: str = Field(default=None, description="A JSON string (not an object)")
    messageCount: int = Field(default=None, description="Number of messages")
    userCounter: int = Field(default=None, description="Number of members")
    public: Opaque | str = Field(default=None, description="Public link data: an object or a string")


# --- get_chat's arguments -------------------------------------------------------------------------------------

DIALOG_ID_MAX = 20
_DIALOG_ID = re.compile(r"(chat)?[1-9][0-9]{0,10}")
DIALOG_ID_FORM = (
    '"chat" followed by the chat id for a group chat (e.g. "chat5"), or a user id for the '
    'personal chat with that user (e.g. "123")'
)


def check_dialog_id(value: object) -> str:
    """The dialogId forms imbot.v2.Chat.get accepts; anything else is refused before a request is made."""
    if value is None or value == "":
        raise InputError(f"dialogId is required: a string, {DIALOG_ID_FORM}.")
    if not isinstance(value, str):
        raise InputError(
            f"dialogId must be a string, {DIALOG_ID_FORM}; got a JSON {_json_type(value)}. "
            'For a group chat with id 5 pass "chat5"; for a personal chat with user 5 pass "5".'
        )
    shown = value if len(value) <= DIALOG_ID_MAX + 10 else value[: DIALOG_ID_MAX + 10] + "…"
    if len(value) > DIALOG_ID_MAX or not _DIALOG_ID.fullmatch(value):
        hint = ""
        if value.strip() != value or " " in value:
            hint = " Remove the spaces."
        elif re.fullmatch(r"(?i)chat ?#?[0-9]+", value):
            hint = f' Write it as "chat{re.sub(r"[^0-9]", "", value).lstrip("0") or "N"}".'
        raise InputError(f"dialogId {shown!r} is not valid: expected {DIALOG_ID_FORM}.{hint}")
    return value


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def check_bot_id(value: object) -> int:
    try:
        return parse_bot_id(value, "botId")
    except ConfigError as err:
        raise InputError(str(err) + "; or leave botId out to use B24_BOT_ID") from None


def check_bot_token(value: object) -> str:
    if not isinstance(value, str):
        raise InputError("botToken must be a string: the token chosen when the bot was registered")
    try:
        return check_secret(value, "botToken", BOT_TOKEN_MAX)
    except ConfigError as err:
        raise InputError(str(err) + "; or leave botToken out to use B24_BOT_TOKEN") from None

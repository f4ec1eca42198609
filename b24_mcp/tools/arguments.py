"""Tool arguments: each one's limits, its check and its JSON schema, made from the same constants.

The SDK's own argument validation is bypassed (`server.py`): its messages quote the input, which may be a bot
token, and it ignores unknown arguments. So each `Arg`'s `check` names the field and the accepted form without
echoing a secret, `parse` refuses unknown arguments by name, and nothing is sent to Bitrix24 for input that fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import ConfigError, InputError
from ..forms import BOT_TOKEN_MAX, MAX_ID, WHOLE_NUMBER_RULE, check_secret, parse_bot_id, whole_number

DIALOG_ID_MAX = 20
DIALOG_ID_PATTERN = r"^(chat)?[1-9][0-9]{0,10}$"
DIALOG_ID_FORM = (
    '"chat" followed by the chat id for a group chat (e.g. "chat5"), or a user id for the '
    'personal chat with that user (e.g. "123")'
)
MEMBERS_LIMIT_MAX = 200  # imbot.v2.Chat.User.list: limit 1–200, default 50
MEMBERS_LIMIT_DEFAULT = 50
MEMBER_ORDER_FIELDS = ("id", "lastSendMessageId", "userId")
RANGE_MAX = 50  # imbot.v2.Chat.Message.getContext: range 1–50 on each side, default 50
RANGE_DEFAULT = 20  # b24-mcp's default: 41 messages is a readable window for a model
PAGE_MAX = 10_000  # pages of a file's text (get_file): more than any file within B24_FILE_MAX_BYTES has
ECHO_MAX = 30  # how much of a caller's bad value is quoted back

_DIALOG_ID = re.compile(DIALOG_ID_PATTERN)


@dataclass(frozen=True)
class Arg:
    """One tool argument: its JSON schema and the check that turns raw JSON into the value to send."""

    name: str
    schema: dict[str, Any]
    check: Callable[[object], Any]
    required: bool = False


def input_schema(args: list[Arg]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {a.name: a.schema for a in args},
        "additionalProperties": False,
    }
    required = [a.name for a in args if a.required]
    if required:
        schema["required"] = required
    return schema


def parse(args: list[Arg], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The checked values of the arguments given (absent and null ones left out); InputError otherwise."""
    known = {a.name for a in args}
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        names = ", ".join(_shown(k) for k in unknown[:5])
        raise InputError(
            f"unknown argument{'s' if len(unknown) > 1 else ''} {names}: this tool takes only "
            f"{', '.join(a.name for a in args)}. Remove the others and call again."
        )
    values: dict[str, Any] = {}
    for arg in args:
        value = raw.get(arg.name)
        if value is None or value == "":
            if arg.required:
                arg.check(None)  # raises the argument's own "is required" message
            continue
        values[arg.name] = arg.check(value)
    return values


def _shown(value: str) -> str:
    """A caller's value quoted back, bounded (a 1 MB dialogId is not echoed whole)."""
    return repr(value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…")


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object", str: "string"}
    return names.get(type(value), type(value).__name__)


# --- the checks --------------------------------------------------------------------------------------------------


def check_dialog_id(value: object) -> str:
    """The dialogId forms the imbot.v2 methods accept; anything else is refused before a request is made."""
    if value is None or value == "":
        raise InputError(f"dialogId is required: a string, {DIALOG_ID_FORM}.")
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= MAX_ID:
            return str(value)  # a bare number can only mean a personal chat with that user (the Inspector sends one)
        # Not echoed: a huge JSON integer has more digits than Python will even print.
        raise InputError(f"dialogId is not valid: a user id is a number from 1 to {MAX_ID}; {DIALOG_ID_FORM}.")
    if not isinstance(value, str):
        raise InputError(
            f"dialogId must be a string, {DIALOG_ID_FORM}; got a JSON {_json_type(value)}. "
            'For a group chat with id 5 pass "chat5"; for a personal chat with user 5 pass "5".'
        )
    if len(value) > DIALOG_ID_MAX or not _DIALOG_ID.fullmatch(value):
        hint = ""
        link = re.search(r"IM_DIALOG=((?:chat)?([1-9][0-9]{0,9}))(?![0-9])", value)
        if link and int(link.group(2)) <= MAX_ID:
            hint = f' It looks like a chat link: pass "{link.group(1)}".'
        elif re.search(r"\s", value):
            hint = (
                " Remove the spaces." if set(re.findall(r"\s", value)) == {" "} else " Remove the line breaks and tabs."
            )
        elif re.fullmatch(r"(?i)chat[-_#:]?[0-9]+", value):
            digits = re.sub(r"[^0-9]", "", value).lstrip("0")
            if digits and len(digits) <= 10 and int(digits) <= MAX_ID:
                hint = f' Write it as "chat{digits}".'
            else:  # not echoed: "chat" and a million digits is not a hint
                hint = f" Bitrix24 ids are from 1 to {MAX_ID}."
        raise InputError(f"dialogId {_shown(value)} is not valid: expected {DIALOG_ID_FORM}.{hint}")
    if int(value.removeprefix("chat")) > MAX_ID:
        raise InputError(
            f"dialogId {_shown(value)} is not valid: Bitrix24 ids are at most {MAX_ID}; expected {DIALOG_ID_FORM}."
        )
    return value


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


def _integer(name: str, low: int, high: int, example: int, what: str) -> Callable[[object], int]:
    def check(value: object) -> int:
        if value is None:
            raise InputError(f"{name} is required: {what}, e.g. {example}.")
        number = whole_number(value)
        if number is None or not low <= number <= high:
            raise InputError(f"{name} must be an integer from {low} to {high} ({what}), e.g. {example}.")
        return number

    return check


def check_order(value: object) -> dict[str, str]:
    form = f'an object with one of {", ".join(MEMBER_ORDER_FIELDS)} mapped to "ASC" or "DESC", e.g. {{"id": "ASC"}}'
    if not isinstance(value, dict) or not value or len(value) > len(MEMBER_ORDER_FIELDS):
        raise InputError(f"order must be {form}.")
    for key, direction in value.items():
        if key not in MEMBER_ORDER_FIELDS or not isinstance(direction, str) or direction.upper() not in ("ASC", "DESC"):
            raise InputError(f"order must be {form}; {_shown(str(key))} is not one of them or not ASC/DESC.")
    return {key: direction.upper() for key, direction in value.items()}


check_message_id = _integer("messageId", 1, MAX_ID, 789, "a message id, as in get_chat's lastMessageId")
check_limit = _integer("limit", 1, MEMBERS_LIMIT_MAX, MEMBERS_LIMIT_DEFAULT, "how many members to return")
check_range = _integer("range", 1, RANGE_MAX, RANGE_DEFAULT, "how many messages to read on each side")
check_before = _integer("beforeMessageId", 1, MAX_ID, 789, "read the messages before this one")
check_file_id = _integer("fileId", 1, MAX_ID, 138, "a file id, from a message's params.FILE_ID")
check_page = _integer("page", 1, PAGE_MAX, 1, "which page of the file's text, from 1")
check_after = _integer("afterMessageId", 1, MAX_ID, 789, "read the messages after this one")
check_author = _integer("authorId", 1, MAX_ID, 1, "a user id, e.g. a message's authorId")


def count_arg(name: str, high: int, default: int, what: str, absent: str | None = None) -> Arg:
    """An integer argument from 1 to `high`: how many of something (`what`, e.g. "how many chats to list");
    `absent` says what leaving it out means when that is not `default`."""
    schema = {"type": "integer", "minimum": 1, "maximum": high, "description": f"{what[0].upper()}{what[1:]}, "
              f"1–{high} ({absent or f'default {default}'})"}  # fmt: skip
    return Arg(name, schema, _integer(name, 1, high, default, what))


def time_arg(name: str, what: str) -> Arg:
    def check(value: object) -> float:
        form = 'an ISO 8601 time with its offset, e.g. "2025-03-18T09:00:00+01:00" or "2025-03-18T08:00:00Z"'
        if not isinstance(value, str):
            raise InputError(f"{name} must be {form}.")
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            shown = value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…"
            raise InputError(f"{name} {shown!r} is not a time: expected {form}.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)  # said in the schema: a time without an offset is UTC
        return moment.timestamp()

    schema = {"type": "string", "description": f"{what}: an ISO 8601 time, e.g. 2025-03-18T09:00:00+01:00 (UTC "
              "if no offset is given).", "maxLength": 40}  # fmt: skip
    return Arg(name, schema, check)


# --- the arguments, as published -----------------------------------------------------------------------------------

DIALOG_ID = Arg(
    "dialogId",
    {
        "type": "string",
        "description": f"Which chat: {DIALOG_ID_FORM}.",
        "pattern": DIALOG_ID_PATTERN,
        "maxLength": DIALOG_ID_MAX,
        "examples": ["chat5", "123"],
    },
    check_dialog_id,
    required=True,
)
BOT_ID = Arg(
    "botId",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": f"The bot's id, e.g. 456 ({WHOLE_NUMBER_RULE}). Optional: defaults to B24_BOT_ID.",
    },
    check_bot_id,
)
BOT_TOKEN = Arg(
    "botToken",
    {
        "type": "string",
        "maxLength": BOT_TOKEN_MAX,
        "description": "The token chosen when the bot was registered. Optional: defaults to B24_BOT_TOKEN; "
        "only webhook authorisation needs it.",
    },
    check_bot_token,
)
BOT = [BOT_ID, BOT_TOKEN]
MESSAGE_ID = Arg(
    "messageId",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": "A message id, e.g. 789, from get_chat's lastMessageId or an earlier get_messages "
        f"({WHOLE_NUMBER_RULE}).",
    },
    check_message_id,
)
BEFORE = Arg(
    "beforeMessageId",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": "Page back: the messages just before this one (not including it), e.g. the first id of the "
        "previous window.",
    },
    check_before,
)
AFTER = Arg(
    "afterMessageId",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": "Page forward: the messages just after this one (not including it), e.g. the last id of the "
        "previous window.",
    },
    check_after,
)
ORDER = Arg(
    "order",
    {
        "type": "object",
        "description": 'Sort order, e.g. {"id": "ASC"}. Fields: id, lastSendMessageId, userId. Default: the portal\'s.',
        "properties": {f: {"type": "string", "enum": ["ASC", "DESC"]} for f in MEMBER_ORDER_FIELDS},
        "additionalProperties": False,
        "minProperties": 1,
    },
    check_order,
)
LIMIT = Arg(
    "limit",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": MEMBERS_LIMIT_MAX,
        "description": f"How many members to return, 1–{MEMBERS_LIMIT_MAX}. Default {MEMBERS_LIMIT_DEFAULT}. "
        "An integer, as for every number here.",
    },
    check_limit,
)
RANGE = Arg(
    "range",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": RANGE_MAX,
        "description": f"How many messages: on each side of messageId, or before beforeMessageId, or after "
        f"afterMessageId; 1–{RANGE_MAX}. Default {RANGE_DEFAULT}. An integer, as for every number here.",
    },
    check_range,
)

FILE_ID = Arg(
    "fileId",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": 'A file id, e.g. 138, from a message\'s params.FILE_ID (sent as strings: "138" is file 138).',
    },
    check_file_id,
    required=True,
)
PAGE = Arg(
    "page",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": PAGE_MAX,
        "description": "Which page of a long text or PDF to show, from 1 (default 1); the result says how many.",
    },
    check_page,
)

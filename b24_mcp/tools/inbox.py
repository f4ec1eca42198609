"""What the inbox tools (list_chats, get_updates, search_messages) share: the journal's answer when it is off, the
time arguments, how a journal row reads as a message, and the journal's state in every result."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..bitrix24.models import ABSENT
from ..errors import B24Error
from .arguments import time_arg
from .spec import Values

if TYPE_CHECKING:
    from ..bitrix24.client import B24Client, OnWait

JOURNAL_OFF = (
    "The journal is off, so b24-mcp knows no chats, updates or messages beyond what it is asked to read. The journal "
    "is a local copy of the bot's event queue (imbot.v2.Event.get: the chats the bot joins and the messages of its "
    "chats). Tell the user: set B24_JOURNAL=on in the server's environment and restart it, if no other program reads "
    'this bot\'s events (only one application receives them; the bot must be registered with eventMode "fetch"). '
    "Until then, use get_chat and get_messages with a dialogId the user names."
)
INBOX_NOTE = (
    "It answers from b24-mcp's journal of the bot's events (B24_JOURNAL=on), brought up to date first, so it "
    "covers what was said since the journal was turned on; without the journal it says how to turn it on."
)

INBOX_ERRORS = (
    "On failure the result is an error saying what to do: fix a malformed argument and call again; JOURNAL_OFF means "
    "the journal is off: tell the user what the message says."
)


async def journal_off(client: B24Client, values: Values, on_wait: OnWait | None) -> BaseModel:
    """An inbox tool's `run` when no journal was handed in."""
    raise B24Error(JOURNAL_OFF, code="JOURNAL_OFF")


class JournalState(BaseModel):
    """How current the journal is."""

    model_config = ConfigDict(extra="forbid", strict=True, title="JournalState")

    drainedAt: str | None = Field(default=ABSENT, description="When the bot's event queue was last read, ISO 8601")
    behind: bool = Field(default=ABSENT, description="Whether the queue held more events than were read then")
    botDeleted: str | None = Field(default=ABSENT, description="When Bitrix24 said the bot itself was deleted")
    note: str = Field(default=ABSENT, description="Why the journal could not be brought up to date just now")


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def journal_state(stats: dict[str, Any], note: str | None) -> JournalState:
    state = JournalState(drainedAt=iso(stats["drained_at"]), behind=stats["behind"])
    if stats["bot_deleted"]:
        state.botDeleted = stats["bot_deleted"]
    if note:
        state.note = note
    return state


def state_line(state: dict[str, Any]) -> str:
    said = f"Journal read the bot's queue at {state.get('drainedAt') or 'never'}"
    if state.get("behind"):
        said += " (more events were waiting; the next read continues)"
    if state.get("botDeleted"):
        said += f". Bitrix24 said the bot itself was deleted ({state['botDeleted']}): no new events will come"
    return said + "." + (f" {state['note']}" if state.get("note") else "")


SINCE = time_arg("since", "Only what happened at or after this time")
UNTIL = time_arg("until", "Only what happened before this time")


def as_message(row: dict[str, Any]) -> dict[str, Any]:
    """A journal row as get_messages' message (the fields the journal keeps), for the structured result."""
    message: dict[str, Any] = {"id": row["message_id"] if "message_id" in row else row["id"]}
    for key, field in (("author_id", "authorId"), ("date", "date"), ("text", "text")):
        if row.get(key) is not None:
            message[field] = row[key]
    if row.get("author"):
        message["author"] = row["author"]
    return message

"""The bot's event queue as imbot.v2.Event.get answers it: a page of events, and the data of those the journal reads.

Read like every answer (strict models, a value unlike the docs set aside by `mismatches.accept`), with what real
portals write: Event.get re-decodes its stored JSON, so an empty object arrives as `[]`, and a chat, user or
message the portal could not load is `[]` or `{"id": N}`. The fetch-mode `bot` is the owner's format, whose
`appId` is "custom" + the bot token: no model here keeps it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .models import ABSENT, Chat, EmptyArray, Message, Opaque, User, shaped

EVENT_GET = "imbot.v2.Event.get"
LIMIT_MAX = 1000  # Event.get's `limit`: 1–1000, default 100

JOIN = "ONIMBOTV2JOINCHAT"
ADD = "ONIMBOTV2MESSAGEADD"
UPDATE = "ONIMBOTV2MESSAGEUPDATE"
DELETE = "ONIMBOTV2MESSAGEDELETE"
BOT_DELETED = "ONIMBOTV2DELETE"


class Event(BaseModel):
    """One event of the queue; `data` is read by the type's own model (`data_of`)."""

    model_config = shaped("Event")

    eventId: int
    type: str = Field(default=ABSENT)
    date: str | None = Field(default=ABSENT)
    data: Opaque = Field(default=ABSENT)


class EventPage(BaseModel):
    """imbot.v2.Event.get's result."""

    model_config = shaped("EventPage")

    events: list[Event]
    nextOffset: int
    hasMore: bool = Field(default=ABSENT)


class EventData(BaseModel):
    """What the journal reads of an event's data (JOINCHAT, MESSAGEADD/UPDATE/DELETE): never `bot`."""

    model_config = shaped("EventData")

    dialogId: str = Field(default=ABSENT)
    chat: Chat | EmptyArray = Field(default=ABSENT)
    user: User | EmptyArray = Field(default=ABSENT)
    message: Message | EmptyArray = Field(default=ABSENT)
    messageId: int = Field(default=ABSENT)

    def model_post_init(self, context: Any) -> None:
        extra = self.__pydantic_extra__
        if extra is not None:  # nothing but the fields above is kept: `bot` carries the bot token in its appId
            extra.clear()

"""The stand-in portal's event queue: what imbot.v2.Event.get hands a fetch-mode bot, shaped as a portal writes it.

Each event's data is as event-formats.md shows it and as the portal's EventPayload builds it: the chat in its
short format (no role, muteList or counters), the user without online times (false), the bot in the owner's
format, whose appId is "custom" + the bot token (what b24-mcp must never keep), and a chat or user the portal
cannot load as `[]`. The queue confirms as the portal does: an `offset` deletes every event below it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .standin_data import detached

SHORT_CHAT = ("id", "dialogId", "type", "name", "entityType", "owner", "avatar", "color")
OFFLINE = ("idle", "lastActivityDate", "mobileLastDate", "desktopLastDate")
FIRST_EVENT_ID = 1001  # the docs' example


def short_chat(chat: Mapping[str, Any]) -> dict[str, Any]:
    return {key: chat[key] for key in SHORT_CHAT if key in chat}


def event_user(user: Mapping[str, Any] | None) -> dict[str, Any] | list[Any]:
    return [] if user is None else {**user, **dict.fromkeys(OFFLINE, False)}


class EventQueue:
    """A bot's queue of events: `push` adds one, `page` answers Event.get (thread-safe)."""

    def __init__(self, bot: Callable[[], dict[str, Any]], first_id: int = FIRST_EVENT_ID) -> None:
        self._bot = bot  # the owner's format, made when an event is written (its counters change)
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.next_id = first_id
        self.pages = 0  # Event.get calls answered

    def push(self, kind: str, date: str, data: dict[str, Any]) -> int:
        with self.lock:
            event_id = self.next_id
            self.next_id += 1
            self.events.append({"eventId": event_id, "type": kind, "date": date, "data": {"bot": self._bot(), **data}})
        return event_id

    def page(self, offset: int | None, limit: int) -> dict[str, Any]:
        """Confirm (delete) the events below `offset`, then the next `limit` of them."""
        with self.lock:
            self.pages += 1
            if offset:
                self.events = [e for e in self.events if e["eventId"] >= offset]
            events = detached(self.events[:limit])
        next_offset = events[-1]["eventId"] + 1 if events else (offset or 0)
        return {"events": events, "nextOffset": next_offset, "hasMore": len(events) >= limit}

    def __len__(self) -> int:
        with self.lock:
            return len(self.events)


def history(
    queue: EventQueue,
    chats: Mapping[str, dict[str, Any]],
    joined: Iterable[str],
    users: Mapping[int, dict[str, Any]],
    messages: Iterable[dict[str, Any]],
) -> None:
    """The events a bot that joined `joined` and read along would have queued: a JOINCHAT per chat, then a
    MESSAGEADD per message of those chats, in the order they were written."""
    by_id = {chat["id"]: (dialog, chat) for dialog, chat in chats.items() if dialog in joined}
    for dialog, chat in by_id.values():
        adder = users.get(chat.get("owner", 0))
        date = chat.get("dateCreate") or "2025-01-01T00:00:00+00:00"
        data = {"dialogId": dialog, "chat": short_chat(chat), "user": event_user(adder), "language": "en"}
        queue.push("ONIMBOTV2JOINCHAT", date, data)
    for message in sorted(messages, key=lambda m: (str(m.get("date")), m["id"])):  # a test may mistype a date
        if message["chatId"] not in by_id:
            continue
        _, chat = by_id[message["chatId"]]
        data = {
            "message": message,
            "chat": short_chat(chat),
            "user": event_user(users.get(message["authorId"])),
            "language": "en",
        }
        queue.push("ONIMBOTV2MESSAGEADD", message["date"], data)


class Chatter:
    """What happens in the portal's chats while a test or the demo watches: each change is written to the
    messages the methods read and queued as the event a portal sends."""

    def __init__(
        self,
        queue: EventQueue,
        chats: dict[str, dict[str, Any]],
        users: Mapping[int, dict[str, Any]],
        messages: dict[int, dict[str, Any]],
        make: Callable[..., dict[str, Any]],
    ) -> None:
        self.queue, self.chats, self.users, self.messages, self._make = queue, chats, users, messages, make

    def _data(self, dialog: str, author: int, **extra: Any) -> dict[str, Any]:
        return {"chat": short_chat(self.chats[dialog]), "user": event_user(self.users.get(author)), **extra}

    def join(self, dialog: str, chat: dict[str, Any], adder: int, date: str) -> None:
        """The bot is added to a new chat (the tests' membership is the caller's to set)."""
        self.chats[dialog] = chat
        data = {"dialogId": dialog, **self._data(dialog, adder), "language": "en"}
        self.queue.push("ONIMBOTV2JOINCHAT", date, data)

    def say(self, dialog: str, author: int, text: str, date: str) -> int:
        """A new message in `dialog`; its id."""
        chat = self.chats[dialog]
        mid = max(self.messages, default=0) + 1
        message = self._make(mid, chat["id"], author, date, text)
        self.messages[mid] = message
        self.chats[dialog] = {**chat, "lastMessageId": mid}  # a copy: the module's CHATS stay as they are
        self.queue.push("ONIMBOTV2MESSAGEADD", date, self._data(dialog, author, message=message, language="en"))
        return mid

    def edit(self, mid: int, text: str, date: str) -> None:
        message = self.messages[mid] = {**self.messages[mid], "text": text, "params": {"IS_EDITED": "Y"}}
        dialog = self._dialog_of(message["chatId"])
        self.queue.push("ONIMBOTV2MESSAGEUPDATE", date, self._data(dialog, message["authorId"], message=message))

    def delete(self, mid: int, date: str) -> None:
        message = self.messages.pop(mid)
        dialog = self._dialog_of(message["chatId"])
        self.queue.push("ONIMBOTV2MESSAGEDELETE", date, self._data(dialog, message["authorId"], messageId=mid))

    def _dialog_of(self, chat_id: int) -> str:
        return next(d for d, c in self.chats.items() if c["id"] == chat_id)

"""The chats the journal knows, as resources: resources/list names each one, and what the journal learns is
announced on the SDK's subscription bus (2026-07-28 `subscriptions/listen`): the list changed when a chat is new,
and `bitrix24://chat/{dialogId}` and `…/messages` updated when one of its events is journaled."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, SubscriptionBus
from mcp_types import Resource

from .tools.identity import CHAT_URI, ICONS

if TYPE_CHECKING:
    from .journal.inbox import Inbox


def chat_uri(dialog_id: str, suffix: str = "") -> str:
    return CHAT_URI.replace("{dialogId}", dialog_id) + suffix


class KnownChats:
    def __init__(self, bus: SubscriptionBus, inbox: Callable[[], Inbox | None]) -> None:
        self.bus = bus
        self._inbox = inbox
        self._known: set[int] | None = None  # the chats resources/list named last (None: not yet listed)

    def listed(self) -> list[Resource]:
        """One resource per chat the journal knows (none without the journal); the journal is read as it is."""
        inbox = self._inbox()
        if inbox is None:
            return []
        chats = inbox.journal.chats(limit=1000)
        self._known = {row["chat_id"] for row in chats}
        return [
            Resource(
                uri=chat_uri(row["dialog_id"], "/messages"),
                name=f"bitrix24-chat-{row['dialog_id']}",
                title=f"Bitrix24 chat {row['dialog_id']}: latest messages",
                description="The chat's latest messages as JSON (get_messages' fields; texts are untrusted). Its "
                "name, as chat members wrote it, is in the result, not here.",
                mime_type="application/json",
                icons=ICONS,
            )
            for row in chats
            if row["dialog_id"]
        ]

    async def journaled(self, chat_ids: frozenset[int]) -> None:
        """Announce what a drained page changed (the drain's `journaled` callback)."""
        inbox = self._inbox()
        if inbox is None:
            return
        dialogs = inbox.journal.dialogs(chat_ids)
        if self._known is not None and set(dialogs) - self._known:
            await self.bus.publish(ResourcesListChanged())
        for dialog in dialogs.values():
            await self.bus.publish(ResourceUpdated(uri=chat_uri(dialog)))
            await self.bus.publish(ResourceUpdated(uri=chat_uri(dialog, "/messages")))

"""Backfill: when the journal first sees a chat, what was said there before, read back with getContext pages.

The queue holds only what happened since the bot was added (or since the journal started), so search would miss a
chat's history. A bounded number of pages per chat (B24_JOURNAL_BACKFILL), each a `background` call behind every
interactive one. History is kept as messages, not as changes: get_updates reports what happened, not what was read.
"""

from __future__ import annotations

import logging
from typing import Any

from ..bitrix24.client import B24Client
from ..bitrix24.models import MessageWindow
from ..errors import B24Error
from .store import Journal

log = logging.getLogger("b24_mcp.journal")

GET_CONTEXT = "imbot.v2.Chat.Message.getContext"  # the method get_messages calls (tools/get_messages.py)
RANGE = 50  # getContext's most on each side


async def backfill(client: B24Client, journal: Journal, chat_id: int, pages: int) -> int:
    """Read up to `pages` pages of the chat's history before its oldest journaled message; the messages kept."""
    kept = 0
    if journal.oldest_message(chat_id) is None:
        return 0  # a chat joined, nothing said yet: its first message is the anchor, at a later drain
    for _ in range(pages):
        anchor = journal.oldest_message(chat_id)
        if anchor is None:
            break
        params: dict[str, Any] = {**client.bot_params(None, None), "messageId": anchor, "range": RANGE}
        try:
            window: MessageWindow
            window, _ = await client.call(GET_CONTEXT, params, MessageWindow, background=True)
        except B24Error as err:  # a bot that may not read messages, a chat it left: the events still come
            log.info("backfilling chat %d stopped: %s", chat_id, err.code or type(err).__name__)
            break
        earlier = [m for m in window.messages if m.id < anchor]
        kept += journal.history(chat_id, earlier, window.users if "users" in window.model_fields_set else [])
        if not earlier or not window.hasPrevPage:
            break
    journal.set_backfilled(chat_id)
    return kept

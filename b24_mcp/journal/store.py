"""The journal: what the bot's event queue said, kept in one SQLite file (WAL, FTS5 for search, mode 0600).

Each page of events is applied in one transaction together with the queue position it leads to, so a position
is never stored ahead of what it confirms; an event's id is the key of its row in `changes`, so applying it again
changes nothing. What is kept: chats (from JOINCHAT and every event's `chat`), messages (added, edited in place,
deleted removed), authors' names, what changed when; never the event's `bot` (its appId holds the bot token), a
webhook, a token or a download link. Message texts are untrusted data: the tools quote them as get_messages does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bitrix24.events import ADD, BOT_DELETED, DELETE, EVENT_GET, JOIN, UPDATE, Event, EventData
from ..bitrix24.mismatches import Unusable, accept
from ..bitrix24.models import Chat, Message, User
from ..forms import stamp

log = logging.getLogger("b24_mcp.journal")

DAY = 86_400.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chats(
    chat_id INTEGER PRIMARY KEY, dialog_id TEXT, name TEXT, type TEXT, joined_at REAL, last_activity REAL,
    last_message_id INTEGER, left_at REAL, seen_id INTEGER NOT NULL DEFAULT 0,
    backfilled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS users(user_id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE IF NOT EXISTS messages(
    id INTEGER PRIMARY KEY, chat_id INTEGER NOT NULL, author_id INTEGER, date TEXT, ts REAL NOT NULL,
    text TEXT NOT NULL DEFAULT '', files TEXT, edited INTEGER NOT NULL DEFAULT 0, event_id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_chat ON messages(chat_id, ts);
CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);
CREATE TABLE IF NOT EXISTS changes(
    event_id INTEGER PRIMARY KEY, kind TEXT NOT NULL, chat_id INTEGER, message_id INTEGER, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS changes_ts ON changes(ts);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    text, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS messages_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TRIGGER IF NOT EXISTS messages_au AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END;
"""
KINDS = {JOIN: "joined", ADD: "new", UPDATE: "edited", DELETE: "deleted", BOT_DELETED: "bot deleted"}


@dataclass(frozen=True)
class Applied:
    """What one page did: events journaled now, events seen before (not applied again), events set aside."""

    new: int = 0
    again: int = 0
    skipped: int = 0
    chats: frozenset[int] = frozenset()  # the chats an event was journaled for


class Journal:
    """One journal file (or, for the demo, one in memory); every method is one short transaction."""

    def __init__(self, path: Path | str, *, days: int = 90, messages: int = 0, clock: Any = time.time) -> None:
        self.path = str(path)
        self.days = days
        self.messages = messages  # at most this many kept, the newest (0: no limit but the days)
        self._clock = clock
        if self.path != ":memory:":
            _private_file(Path(self.path))
        self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 10000")
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")  # WAL: a commit survives a killed process
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- the queue ------------------------------------------------------------------------------------------------

    def position(self) -> int | None:
        """The offset the next Event.get confirms: everything below it is journaled. None before the first."""
        value = self._meta("position")
        return None if value is None else int(value)

    def apply(
        self, events: Sequence[Event], next_offset: int, has_more: bool = False, *, stream: str | None = None
    ) -> Applied:
        """Journal a page of events and the position it leads to (for a replica: the log's entry id it read up
        to), in one transaction."""
        now = self._clock()
        new = again = skipped = 0
        touched: set[int] = set()
        with _transaction(self.db):
            for event in events:
                outcome = self._apply_one(event, now)
                if outcome is None:
                    skipped += 1
                elif outcome < 0:
                    again += 1
                else:
                    new += 1
                    if outcome:
                        touched.add(outcome)
            position = self.position()
            self._set("position", str(max(next_offset, position or 0)))
            self._set("drained_at", repr(now))
            self._set("behind", "1" if has_more else "0")
            if stream is not None:
                self._set("stream", stream)
            self._prune(now)
        return Applied(new, again, skipped, frozenset(touched))

    def _apply_one(self, event: Event, now: float) -> int | None:
        """The chat id the event was journaled for (0: none), -1 if it was journaled before, None if set aside."""
        kind = KINDS.get(event.type or "")
        if kind is None:
            return None  # an event the journal does not keep (commands, reactions, context)
        try:
            data, report = accept(EventData, event.data if isinstance(event.data, dict) else {}, EVENT_GET)
        except Unusable:
            log.warning("event %d (%s) has no data b24-mcp can read; it is left out", event.eventId, event.type)
            return None
        if report:
            log.warning("event %d (%s): %d value(s) unlike the docs set aside", event.eventId, event.type, len(report))
        assert isinstance(data, EventData)
        chat = data.chat if isinstance(data.chat, Chat) else None
        message = data.message if isinstance(data.message, Message) else None
        chat_id = (message.chatId if message is not None and message.chatId else None) or (chat.id if chat else None)
        message_id = message.id if message is not None else data.messageId
        when = stamp(message.date if message is not None and event.type != UPDATE else None)
        when = when or stamp(event.date) or now
        inserted = self.db.execute(
            "INSERT OR IGNORE INTO changes(event_id, kind, chat_id, message_id, ts) VALUES (?, ?, ?, ?, ?)",
            (event.eventId, kind, chat_id, message_id, when),
        ).rowcount
        if not inserted:
            return -1
        if chat is not None:
            self._chat(chat, data.dialogId if event.type == JOIN else None)
        if isinstance(data.user, User) and data.user.id is not None and data.user.name:
            self.db.execute("INSERT OR REPLACE INTO users(user_id, name) VALUES (?, ?)", (data.user.id, data.user.name))
        if event.type == JOIN and chat_id is not None:
            self.db.execute("UPDATE chats SET joined_at = ?, left_at = NULL WHERE chat_id = ?", (when, chat_id))
        elif event.type in (ADD, UPDATE) and message is not None and chat_id is not None:
            self._message(message, chat_id, event, when)
        elif event.type == DELETE and message_id is not None:
            self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        elif event.type == BOT_DELETED:
            self._set("bot_deleted", event.date or repr(now))
        return chat_id or 0

    def _chat(self, chat: Chat, dialog_id: str | None) -> None:
        dialog = dialog_id or chat.dialogId or f"chat{chat.id}"
        self.db.execute(
            "INSERT INTO chats(chat_id, dialog_id, name, type) VALUES (?, ?, ?, ?) ON CONFLICT(chat_id) DO UPDATE "
            "SET dialog_id = excluded.dialog_id, name = coalesce(excluded.name, name), "
            "type = coalesce(excluded.type, type)",
            (chat.id, dialog, chat.name, chat.type),
        )

    def _message(self, message: Message, chat_id: int, event: Event, when: float) -> None:
        params = message.params
        files = getattr(params, "FILE_ID", None) if params is not None and not isinstance(params, list) else None
        sent = stamp(message.date) or when
        self.db.execute(
            "INSERT INTO messages(id, chat_id, author_id, date, ts, text, files, edited, event_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET text = excluded.text, "
            "files = excluded.files, edited = 1, event_id = excluded.event_id WHERE excluded.event_id > event_id",
            (
                message.id,
                chat_id,
                message.authorId,
                message.date,
                sent,
                message.text or "",
                json.dumps([str(f) for f in files]) if files else None,
                1 if event.type == UPDATE else 0,
                event.eventId,
            ),
        )
        self.db.execute(
            "UPDATE chats SET last_activity = max(coalesce(last_activity, 0), ?), "
            "last_message_id = max(coalesce(last_message_id, 0), ?) WHERE chat_id = ?",
            (sent, message.id, chat_id),
        )

    # --- what the tools read ------------------------------------------------------------------------------------

    def chats(self, limit: int = 100) -> list[dict[str, Any]]:
        """The chats the bot is known to be in, the most recently active first, with unread counts."""
        rows = self.db.execute(
            "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.chat_id = c.chat_id AND m.id > c.seen_id) AS unread "
            "FROM chats c ORDER BY coalesce(c.last_activity, c.joined_at, 0) DESC, c.chat_id LIMIT ?",
            (limit,),
        )
        return [dict(row) for row in rows]

    def dialogs(self, chat_ids: frozenset[int] | None = None) -> dict[int, str]:
        """chat id -> dialogId, of these chats or of all."""
        rows = self.db.execute("SELECT chat_id, dialog_id FROM chats WHERE dialog_id IS NOT NULL").fetchall()
        return {row[0]: row[1] for row in rows if chat_ids is None or row[0] in chat_ids}

    def unfilled(self) -> list[int]:
        """Chats whose history was not read back yet (backfill.py)."""
        return [row[0] for row in self.db.execute("SELECT chat_id FROM chats WHERE backfilled = 0")]

    def set_backfilled(self, chat_id: int) -> None:
        with _transaction(self.db):
            self.db.execute("UPDATE chats SET backfilled = 1 WHERE chat_id = ?", (chat_id,))

    def oldest_message(self, chat_id: int) -> int | None:
        row = self.db.execute("SELECT min(id) FROM messages WHERE chat_id = ?", (chat_id,)).fetchone()
        return None if row[0] is None else int(row[0])

    def history(self, chat_id: int, messages: Sequence[Message], users: Sequence[User]) -> int:
        """Messages read back (not events): kept unless already journaled; no change is recorded. How many."""
        now = self._clock()
        kept = 0
        with _transaction(self.db):
            for user in users:
                if user.id is not None and user.name:
                    self.db.execute("INSERT OR IGNORE INTO users(user_id, name) VALUES (?, ?)", (user.id, user.name))
            for message in messages:
                sent = stamp(message.date) or now
                if sent < now - self.days * DAY:
                    continue
                params = message.params
                files = getattr(params, "FILE_ID", None) if not isinstance(params, list) else None
                kept += self.db.execute(
                    "INSERT OR IGNORE INTO messages(id, chat_id, author_id, date, ts, text, files, event_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (message.id, chat_id, message.authorId, message.date, sent, message.text or "",
                     json.dumps([str(f) for f in files]) if files else None),
                ).rowcount  # fmt: skip
        return kept

    def mark_left(self, dialog_id: str) -> None:
        """A read of the chat answered ACCESS_DENIED: no event says the bot left, this does."""
        with _transaction(self.db):
            self.db.execute("UPDATE chats SET left_at = ? WHERE dialog_id = ?", (self._clock(), dialog_id))

    def mark_seen(self, seen: dict[int, int]) -> None:
        """The agent was shown these chats' messages up to these ids."""
        with _transaction(self.db):
            for chat_id, message_id in seen.items():
                self.db.execute("UPDATE chats SET seen_id = max(seen_id, ?) WHERE chat_id = ?", (message_id, chat_id))

    def changes(self, after_event: int, since: float | None, limit: int) -> list[dict[str, Any]]:
        """What happened after a cursor (an event id) or a time, oldest first, with the messages as they are now."""
        rows = self.db.execute(
            "SELECT ch.event_id, ch.kind, ch.chat_id, ch.message_id, ch.ts, c.dialog_id, c.name AS chat_name, "
            "m.author_id, u.name AS author, m.date, m.text, m.files FROM changes ch "
            "LEFT JOIN chats c ON c.chat_id = ch.chat_id LEFT JOIN messages m ON m.id = ch.message_id "
            "LEFT JOIN users u ON u.user_id = m.author_id WHERE ch.event_id > ? AND ch.ts >= ? "
            "ORDER BY ch.event_id LIMIT ?",
            (after_event, since if since is not None else 0.0, limit),
        )
        return [dict(row) for row in rows]

    def search(
        self,
        query: str,
        *,
        dialog_id: str | None = None,
        author_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Messages matching every word of `query`, newest first (by id: Bitrix24's ids grow with time, and FTS5
        returns its rows in id order without sorting them all), each with a snippet (matches in **…**)."""
        rows = self.db.execute(
            "SELECT m.id, m.chat_id, c.dialog_id, c.name AS chat_name, m.author_id, u.name AS author, m.date, "
            "snippet(messages_fts, 0, '**', '**', '…', 16) AS snippet FROM messages_fts "
            "JOIN messages m ON m.id = messages_fts.rowid LEFT JOIN chats c ON c.chat_id = m.chat_id "
            "LEFT JOIN users u ON u.user_id = m.author_id WHERE messages_fts MATCH :query "
            "AND (:dialog IS NULL OR c.dialog_id = :dialog) AND (:author IS NULL OR m.author_id = :author) "
            "AND (:since IS NULL OR m.ts >= :since) AND (:until IS NULL OR m.ts < :until) "
            "ORDER BY messages_fts.rowid DESC LIMIT :limit",  # ids grow with time: FTS5 walks them newest first
            {
                "query": fts_query(query),
                "dialog": dialog_id,
                "author": author_id,
                "since": since,
                "until": until,
                "limit": limit,
            },
        )
        return [dict(row) for row in rows]

    def stats(self) -> dict[str, Any]:
        """What `check` and `b24-mcp journal` say: counts, the position, when it was last drained."""
        one = self.db.execute
        drained = self._meta("drained_at")
        return {
            "chats": one("SELECT count(*) FROM chats").fetchone()[0],
            "messages": one("SELECT count(*) FROM messages").fetchone()[0],
            "oldest": one("SELECT min(ts) FROM messages").fetchone()[0],
            "position": self.position(),
            "drained_at": float(drained) if drained else None,
            "behind": self._meta("behind") == "1",
            "bot_deleted": self._meta("bot_deleted"),
        }

    def forget(self, dialog_id: str | None = None) -> int:
        """Forget one chat (its messages and changes), or everything but the queue position; the messages removed."""
        with _transaction(self.db):
            if dialog_id is None:
                removed = self.db.execute("DELETE FROM messages").rowcount
                for table in ("changes", "chats", "users"):
                    self.db.execute(f"DELETE FROM {table}")  # noqa: S608 - table names are ours
                return removed
            ids = [row[0] for row in self.db.execute("SELECT chat_id FROM chats WHERE dialog_id = ?", (dialog_id,))]
            removed = 0
            for chat_id in ids:
                removed += self.db.execute("DELETE FROM messages WHERE chat_id = ?", (chat_id,)).rowcount
                self.db.execute("DELETE FROM changes WHERE chat_id = ?", (chat_id,))
                self.db.execute("DELETE FROM chats WHERE chat_id = ?", (chat_id,))
            return removed

    # --- the rest -------------------------------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        """Retention (B24_JOURNAL_DAYS, B24_JOURNAL_MESSAGES): what is older, or beyond the newest N, is forgotten
        as each page is journaled."""
        cutoff = now - self.days * DAY
        self.db.execute("DELETE FROM messages WHERE ts < ?", (cutoff,))
        self.db.execute("DELETE FROM changes WHERE ts < ?", (cutoff,))
        if self.messages:
            self.db.execute(
                "DELETE FROM messages WHERE id NOT IN (SELECT id FROM messages ORDER BY ts DESC, id DESC LIMIT ?)",
                (self.messages,),
            )

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with _transaction(self.db):
            self._set(key, value)


_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(query: str) -> str:
    """A search box's words as an FTS5 query: every word must occur (prefixes of the last one too); FTS5's own
    syntax (quotes, NEAR, column filters) is not offered, so no query can fail to parse."""
    words = _WORD.findall(query)
    if not words:
        return '""'
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"
    return " ".join(quoted)


class _transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on an exception): writers queue on the file's lock, not mid-transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite has rolled back itself on some errors (a full disk)
            self.db.execute("ROLLBACK")


def _private_file(path: Path) -> None:
    """The journal's directory (0700 if made here) and the file itself (0600) before SQLite opens it; its WAL
    and shared-memory files take the file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    if hasattr(os, "getuid"):
        os.chmod(path, 0o600)

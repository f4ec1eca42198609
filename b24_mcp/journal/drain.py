"""The drain: imbot.v2.Event.get pages into the journal, one drainer at a time per journal file, at low priority.

A page is committed to the journal, with the `nextOffset` it leads to, before the next call confirms it (an
`offset` deletes every event below it at the portal), so a process killed anywhere, or a portal failing mid-page,
leaves the next drain to resume from the last committed position; events fetched twice are applied once. The
lock is an OS lock on a file beside the journal (the OAuth token file's way): it dies with its process. Calls go
out as `background` calls (`B24Client.call`): only while half the bucket is free, so interactive calls go first.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from filelock import FileLock, Timeout

from ..bitrix24.client import B24Client, Deferred
from ..bitrix24.events import EVENT_GET, LIMIT_MAX, EventPage
from ..errors import B24Error
from .backfill import backfill
from .store import Journal

log = logging.getLogger("b24_mcp.journal")

PAGE = 100  # events a call asks for (Event.get's default; at most LIMIT_MAX)
MORE_GAP = 2.0  # seconds between calls while hasMore (the docs: at least 2 s)
PAGES_MAX = 50  # pages one drain reads at most; the next drain reads on
ON_DEMAND_PAGES = 2  # pages an inbox tool waits for (one 2 s gap at most); the background poll reads the rest
DEFERRED_WAIT = 1.0  # seconds to wait for a spare slot when interactive calls hold the bucket
DEFERRED_TRIES = 5

Sleep = Callable[[float], Awaitable[None]]
Journaled = Callable[[frozenset[int]], Awaitable[None]]  # told the chat ids each page journaled events for


@dataclass
class Drained:
    events: int = 0  # journaled now
    pages: int = 0
    more: bool = False  # the queue had more than this drain read


class Drainer:
    def __init__(
        self,
        client: Callable[[], B24Client],
        journal: Journal,
        *,
        limit: int = PAGE,
        sleep: Sleep = anyio.sleep,
        journaled: Journaled | None = None,
        backfill: int = 0,
    ) -> None:
        if not 1 <= limit <= LIMIT_MAX:
            raise ValueError(f"limit must be 1–{LIMIT_MAX}")
        self._client = client
        self.journal = journal
        self.limit = limit
        self._sleep = sleep
        self.journaled = journaled
        self.backfill = backfill  # pages of a new chat's history to read back (backfill.py)
        self._here = anyio.Lock()  # one drain at a time in this process; the file lock, across processes
        lock = None if journal.path == ":memory:" else Path(journal.path).with_name(Path(journal.path).name + ".lock")
        self._lock = FileLock(lock, timeout=0, thread_local=False) if lock is not None else None

    async def aclose(self) -> None:
        """What the drainer holds beyond the journal (the replicas' Redis pool)."""

    async def refresh(self, fresh: float, now: float) -> None:
        """Drain if the last drain (by any process on this file) is older than `fresh` seconds."""
        drained_at = self.journal.get_meta("drained_at")
        if drained_at is None or now - float(drained_at) >= fresh:
            await self.drain(ON_DEMAND_PAGES)  # None: another process drains; what it has committed is read

    async def drain(self, pages: int = PAGES_MAX) -> Drained | None:
        """Read up to `pages` pages of the queue into the journal; None if another process is draining it now."""
        async with self._here:
            if self._lock is not None:
                try:
                    self._lock.acquire()
                except Timeout:
                    return None
            try:
                drained = await self._pages(pages)
                await self._backfill()
                return drained
            finally:
                if self._lock is not None:
                    self._lock.release()

    async def _pages(self, pages: int) -> Drained:
        client = self._client()
        done = Drained()
        for n in range(pages):
            if n:
                await self._sleep(MORE_GAP)  # the queue said hasMore: the docs ask for 2 s between calls
            params: dict[str, Any] = {**client.bot_params(None, None), "limit": self.limit}
            position = self.journal.position()
            if position is not None:
                params["offset"] = position  # confirms what the journal holds
            page = await self._call(client, params)
            try:
                applied = self.journal.apply(page.events, page.nextOffset, bool(page.hasMore))
            except sqlite3.Error as err:  # a full disk, a file made read-only: the page was not written, nor its offset
                raise B24Error(
                    f"The journal {self.journal.path} could not be written ({err}); it keeps what it held, and the "
                    "next read of the bot's queue starts again from there. Free some disk space, or set "
                    "B24_JOURNAL_FILE to a writable place."
                ) from None
            done.events += applied.new
            done.pages += 1
            if applied.chats and self.journaled is not None:
                await self.journaled(applied.chats)
            if not page.hasMore:
                return done
        done.more = True
        return done

    async def _backfill(self) -> None:
        """The history of the chats that appeared, a bounded number of pages each, after the queue."""
        if not self.backfill:
            return
        for chat_id in self.journal.unfilled():
            await backfill(self._client(), self.journal, chat_id, self.backfill)

    async def _call(self, client: B24Client, params: dict[str, Any]) -> EventPage:
        for attempt in range(DEFERRED_TRIES):
            try:
                page: EventPage
                page, report = await client.call(EVENT_GET, params, EventPage, background=True)
            except Deferred:
                if attempt == DEFERRED_TRIES - 1:
                    raise
                await self._sleep(DEFERRED_WAIT)
                continue
            if report:
                log.warning("Event.get: %d event(s) unlike the docs were set aside", len(report))
            return page
        raise AssertionError("unreachable")


IDLE_FIRST, IDLE_MAX = 5.0, 30.0  # the docs' advice: 5–30 s between polls while the queue is empty


class Poller:
    """The background poll: at once when the queue had events, backing off 5 s → 30 s while it is empty; any
    process's drain counts (the journal's `drained_at`), so two servers on one journal do not poll twice."""

    def __init__(self, drainer: Drainer, *, sleep: Sleep = anyio.sleep, clock: Callable[[], float] = time.time):
        self.drainer = drainer
        self._sleep = sleep
        self._clock = clock
        self.interval = IDLE_FIRST

    async def run(self, rounds: int | None = None) -> None:
        """Poll until cancelled (or `rounds` times, for tests)."""
        done = 0
        while rounds is None or done < rounds:
            done += 1
            await self.once()
            await self._sleep(self.interval)

    async def once(self) -> None:
        drained_at = self.drainer.journal.get_meta("drained_at")
        if drained_at is not None and self._clock() - float(drained_at) < self.interval / 2:
            return  # another process (or an on-demand drain) has just read the queue
        try:
            drained = await self.drainer.drain()
        except Exception as err:  # a portal down, a setting wrong: the tools say so when asked; polling backs off
            log.info("the journal's poll failed (%s); trying again in %.0f s", type(err).__name__, IDLE_MAX)
            self.interval = IDLE_MAX
            return
        if drained is not None and (drained.events or drained.more):
            self.interval = IDLE_FIRST
        else:
            self.interval = min(IDLE_MAX, self.interval * 2)

"""The replicas' journal (B24_REDIS_URL with B24_JOURNAL=on): one replica drains, every replica reads the same log.

Redis holds a lease (`SET NX PX`, renewed while its holder drains; a dead holder's runs out within LEASE_MS), the
queue position and a Stream of the events as Event.get gave them, their `bot` taken out (its appId is the bot
token). The holder appends a page and moves the position in one Lua script that first checks it still holds the
lease, so a page is logged once, with the position it leads to, or not at all. Every replica, the holder too,
applies the Stream in order to its own in-memory journal: the same events in the same order give the same answers.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

import anyio

from ..bitrix24.client import B24Client
from ..bitrix24.events import EVENT_GET, Event, EventPage
from ..bitrix24.redis_state import Redis
from .drain import MORE_GAP, ON_DEMAND_PAGES, PAGE, PAGES_MAX, Drained, Drainer, Journaled, Sleep
from .store import DAY, Journal

log = logging.getLogger("b24_mcp.journal")

LEASE_MS = 5_000  # a dead drainer is replaced within this
READ_BATCH = 1_000  # stream entries read at once

_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS: lease, position, log, drained; ARGV: replica, next offset, now, the oldest stream id to keep (retention:
# stream ids are times in ms), then one JSON event each.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 5, #ARGV do redis.call('XADD', KEYS[3], '*', 'e', ARGV[i]) end
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[4])
local position = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > position then redis.call('SET', KEYS[2], ARGV[2]) end
redis.call('SET', KEYS[4], ARGV[3])
return 1
"""


class SharedLog:
    def __init__(
        self,
        redis: Redis,
        host: str,
        bot_id: int | None,
        lease_ms: int = LEASE_MS,
        days: int = 90,
        clock: Any = time.time,
    ) -> None:
        self.redis = redis
        base = f"b24-mcp:journal:{host}:bot{bot_id or 0}"
        self.keys = [f"{base}:lease", f"{base}:position", f"{base}:log", f"{base}:drained", f"{base}:generation"]
        self.lease_ms = lease_ms
        self.days = days  # B24_JOURNAL_DAYS: the log forgets what is older as each page is appended
        self._clock = clock
        self._lead = redis.client.register_script(_LEAD)
        self._commit = redis.client.register_script(_COMMIT)

    async def lead(self, replica: str) -> bool:
        """Take the lease, or renew it if this replica holds it."""
        held = await self.redis.run(lambda _: self._lead(keys=self.keys[:1], args=[replica, self.lease_ms]))
        return bool(int(held))

    async def position(self) -> int | None:
        value = await self.redis.run(lambda client: client.get(self.keys[1]))
        return None if value is None else int(value)

    async def drained_at(self) -> float | None:
        value = await self.redis.run(lambda client: client.get(self.keys[3]))
        return None if value is None else float(value)

    async def commit(self, replica: str, events: list[dict[str, Any]], next_offset: int) -> bool:
        """Append a page and move the position, if `replica` still holds the lease."""
        now = self._clock()
        args: list[str | int] = [replica, next_offset, repr(now), str(int((now - self.days * DAY) * 1000))]
        args += [json.dumps(event, ensure_ascii=False) for event in events]
        done = await self.redis.run(lambda _: self._commit(keys=self.keys[:4], args=args))
        return bool(int(done))

    def _deleting(self, ids: list[str]) -> Any:
        return lambda client: client.xdel(self.keys[2], *ids)

    async def generation(self) -> str:
        """Which forgetting the log is at: a replica whose journal was built at another one builds it anew."""
        value = await self.redis.run(lambda client: client.get(self.keys[4]))
        return "0" if value is None else str(int(value))

    async def forget(self, dialog_id: str | None = None) -> int:
        """Forget one chat's events (or all of them) from the log, for every replica: the events removed."""
        removed = 0
        if dialog_id is None:
            removed = int(await self.redis.run(lambda client: client.xlen(self.keys[2])))
            await self.redis.run(lambda client: client.delete(self.keys[2]))
        else:
            after = "0"
            while True:
                entries = await self.read(after)
                if not entries:
                    break
                after = entries[-1][0]
                ids = [entry_id for entry_id, event in entries if _dialog_of(event) == dialog_id]
                if ids:
                    removed += int(await self.redis.run(self._deleting(ids)))
        await self.redis.run(lambda client: client.incr(self.keys[4]))
        return removed

    async def read(self, after: str) -> list[tuple[str, Event]]:
        """The log's entries after the stream id `after` ("0" for all), at most READ_BATCH."""
        entries: Any = await self.redis.run(
            lambda client: client.xrange(self.keys[2], min=f"({after}" if after != "0" else "-", count=READ_BATCH)
        )
        return [(str(entry_id), Event.model_validate_json(fields["e"])) for entry_id, fields in entries or []]


def _dialog_of(event: Event) -> str | None:
    """The dialogId of the chat an event is about, as the event names it."""
    chat = event.data.get("chat") if isinstance(event.data, dict) else None
    dialog = chat.get("dialogId") if isinstance(chat, dict) else None
    if dialog is None and isinstance(chat, dict) and isinstance(chat.get("id"), int):
        dialog = f"chat{chat['id']}"
    if dialog is None and isinstance(event.data, dict):
        dialog = event.data.get("dialogId")
    return dialog if isinstance(dialog, str) else None


def logged(event: Event) -> dict[str, Any]:
    """An event as the log keeps it: its data without `bot`."""
    data = event.data if isinstance(event.data, dict) else []
    if isinstance(data, dict):
        data = {key: value for key, value in data.items() if key != "bot"}
    return {**event.model_dump(exclude_unset=True, exclude={"data"}), "data": data}


class SharedDrainer(Drainer):
    """`Drainer` for replicas: the lease holder drains into the log, every replica applies the log."""

    def __init__(
        self,
        client: Any,
        journal: Journal,
        shared: SharedLog,
        *,
        limit: int = PAGE,
        sleep: Sleep = anyio.sleep,
        journaled: Journaled | None = None,
    ) -> None:
        super().__init__(client, journal, limit=limit, sleep=sleep, journaled=journaled)
        self.shared = shared
        self.replica = secrets.token_hex(8)

    async def aclose(self) -> None:
        await self.shared.redis.aclose()

    async def refresh(self, fresh: float, now: float) -> None:
        """Apply the log; and drain, if this replica can lead and the last drain by any replica is stale."""
        drained_at = await self.shared.drained_at()
        if drained_at is None or now - drained_at >= fresh:
            await self.drain(ON_DEMAND_PAGES)
        else:
            async with self._here:
                await self.catch_up()

    async def drain(self, pages: int = PAGES_MAX) -> Drained | None:
        async with self._here:
            done = Drained()
            if await self.shared.lead(self.replica):
                await self._lead(self._client(), done, pages)
            done.events = await self.catch_up()
            return done

    async def _lead(self, client: B24Client, done: Drained, pages: int) -> None:
        for n in range(pages):
            if n:
                await self._sleep(MORE_GAP)
            params: dict[str, Any] = {**client.bot_params(None, None), "limit": self.limit}
            position = await self.shared.position()
            if position is not None:
                params["offset"] = position
            page: EventPage = await self._call(client, params)
            if not await self.shared.commit(self.replica, [logged(e) for e in page.events], page.nextOffset):
                log.info("the journal's lease passed to another replica; it drains from here")
                return
            done.pages += 1
            if not page.hasMore or not await self.shared.lead(self.replica):
                return
        done.more = True

    async def catch_up(self) -> int:
        """Apply what the log holds beyond what this replica's journal has; the events journaled. After a forgetting
        (`b24-mcp journal --forget`, in any replica's environment) the journal is built anew from the log."""
        generation = await self.shared.generation()
        if self.journal.get_meta("generation") != generation:
            self.journal.forget()
            self.journal.set_meta("stream", "0")
            self.journal.set_meta("generation", generation)
        new = 0
        for _ in range(PAGES_MAX):
            after = self.journal.get_meta("stream") or "0"
            entries = await self.shared.read(after)
            if not entries:
                break
            applied = self.journal.apply([event for _, event in entries], 0, stream=entries[-1][0])
            new += applied.new
            if applied.chats and self.journaled is not None:
                await self.journaled(applied.chats)
        return new


__all__ = ["EVENT_GET", "SharedDrainer", "SharedLog"]

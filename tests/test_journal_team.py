"""Replicas on one Redis (the suite's real redis-server) share one journal: one drains at a time, every replica
answers the same, nothing secret reaches Redis, and a lease holder that dies is replaced within the lease."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from b24_mcp import settings as config
from b24_mcp.app import make_client, make_inbox
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.redis_state import Redis
from b24_mcp.journal import command
from b24_mcp.journal.inbox import Inbox
from b24_mcp.journal.shared import SharedDrainer, SharedLog
from tests.portal import StandInPortal
from tests.values import TOKEN, webhook_vars

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def replicas(portal: StandInPortal, redis_url: str, n: int) -> AsyncIterator[list[Inbox]]:
    """`n` inboxes as `n` replicas make them: each its own HTTP client, Redis pools and in-memory journal."""
    env = webhook_vars(portal.webhook_url, B24_REDIS_URL=redis_url, B24_JOURNAL="on", B24_JOURNAL_DAYS="3650")
    env |= {"B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}
    settings = config.load(env)
    async with AsyncExitStack() as stack:
        inboxes = []
        for _ in range(n):
            http = await stack.enter_async_context(make_http(settings.timeout))
            client = make_client(settings, http)
            inbox = make_inbox(settings, lambda client=client: client)  # type: ignore[misc]
            assert inbox is not None and isinstance(inbox.drainer, SharedDrainer)
            stack.push_async_callback(inbox.aclose)
            inboxes.append(inbox)
        yield inboxes


def contents(inbox: Inbox) -> tuple[list[Any], ...]:
    db = inbox.journal.db
    return (
        db.execute("SELECT chat_id, dialog_id, name FROM chats ORDER BY chat_id").fetchall(),
        db.execute("SELECT id, chat_id, text, edited FROM messages ORDER BY id").fetchall(),
        db.execute("SELECT event_id, kind FROM changes ORDER BY event_id").fetchall(),
    )


async def test_three_replicas_one_drainer_the_same_answers(http_portal: StandInPortal, redis_url: str) -> None:
    standin = http_portal.standin
    for n in range(30):
        standin.chatter.say("chat12", 3, f"deploy note {n}", f"2025-03-18T12:{n:02d}:00+01:00")
    async with replicas(http_portal, redis_url, 3) as inboxes:
        async with anyio.create_task_group() as tg:
            for inbox in inboxes:
                tg.start_soon(inbox.fresh)
        standin.chatter.edit(2210, "Staging is ready again.", "2025-03-18T13:00:00+01:00")
        for inbox in inboxes:  # whichever holds the lease reads the edit; the others apply the log
            await inbox.drainer.drain()
        for inbox in inboxes:  # as each does before it answers
            assert await inbox.fresh() is None
        first = contents(inboxes[0])
        assert all(contents(inbox) == first for inbox in inboxes[1:])
        assert len(first[2]) == standin.events.next_id - 1001 == len({row[0] for row in first[2]})
        assert [hit["id"] for hit in inboxes[2].journal.search("ready again")] == [2210]
        offsets = [r.body.get("offset") for r in http_portal.requests if r.path.endswith("imbot.v2.Event.get")]
        assert offsets[0] is None and None not in offsets[1:]  # one chain of confirmations: never read from scratch
    import redis

    with redis.Redis.from_url(redis_url) as raw:
        dumped = b"".join(raw.dump(key) or b"" for key in raw.keys("*"))
    assert TOKEN.encode() not in dumped and b"appId" not in dumped


async def test_a_dead_lease_holder_is_replaced_within_the_lease(http_portal: StandInPortal, redis_url: str) -> None:
    team = config.load(webhook_vars(B24_REDIS_URL=redis_url)).team
    assert team is not None and team.redis is not None
    redis = Redis(team.redis)
    try:
        log = SharedLog(redis, "portal", 456, lease_ms=300)
        assert await log.lead("dead") and not await log.lead("alive")
        deadline = time.monotonic() + 5  # "dead" never renews: its lease runs out
        while not await log.lead("alive"):
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
        assert not await log.commit("dead", [], 2000)  # a holder that lost the lease writes nothing
        assert await log.position() is None
    finally:
        await redis.aclose()


async def test_forgetting_in_the_replicas_log_reaches_every_replica(http_portal: StandInPortal, redis_url: str) -> None:
    standin = http_portal.standin
    standin.chatter.say("chat12", 3, "the release plan", "2025-03-18T12:00:00+01:00")
    env = webhook_vars(http_portal.webhook_url, B24_REDIS_URL=redis_url, B24_JOURNAL="on", B24_JOURNAL_DAYS="3650")
    async with replicas(http_portal, redis_url, 2) as inboxes:
        for inbox in inboxes:
            await inbox.drainer.drain()
        assert all(inbox.journal.search("release") for inbox in inboxes)
        out = io.StringIO()
        assert await anyio.to_thread.run_sync(lambda: command.run(env, forget="chat12", forget_all=False, out=out)) == 0
        assert "forgot chat12:" in out.getvalue() and "the replicas' log in Redis" in out.getvalue()
        for inbox in inboxes:  # as each does before it answers: the log's new generation rebuilds its journal
            assert isinstance(inbox.drainer, SharedDrainer)
            await inbox.drainer.catch_up()
            assert inbox.journal.search("release") == [] and inbox.journal.search("export")  # chat5 is kept
        out = io.StringIO()
        await anyio.to_thread.run_sync(lambda: command.run(env, forget=None, forget_all=True, out=out))
        for inbox in inboxes:
            assert isinstance(inbox.drainer, SharedDrainer)
            await inbox.drainer.catch_up()
            assert inbox.journal.stats()["messages"] == 0
        assert "0 chats, 0 messages" in out.getvalue()


async def test_the_replicas_log_forgets_what_is_older_than_b24_journal_days(redis_url: str) -> None:
    team = config.load(webhook_vars(B24_REDIS_URL=redis_url)).team
    assert team is not None and team.redis is not None
    redis = Redis(team.redis)
    later = [time.time()]
    try:
        log = SharedLog(redis, "retention", 456, days=1, clock=lambda: later[0])
        event = {"eventId": 1, "type": "ONIMBOTV2MESSAGEADD", "date": "2025-03-18T12:00:00+01:00", "data": []}
        assert await log.lead("r") and await log.commit("r", [event], 2)
        assert len(await log.read("0")) == 1
        later[0] += 2 * 86_400  # two days on, the entry appended now is past B24_JOURNAL_DAYS=1
        assert await log.commit("r", [], 3)
        assert await log.read("0") == []
    finally:
        await redis.aclose()

"""The drain: Event.get pages into the journal as the docs say (offset confirms, limit, nextOffset, hasMore, 2 s
between calls while hasMore), nothing lost or doubled when a portal fails mid-page, one drainer per journal file,
the poll's back-off, and the journal's calls behind interactive ones in the bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from b24_mcp import demo
from b24_mcp import settings as config
from b24_mcp.app import make_client
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.pacing import LeakyBucket
from b24_mcp.bitrix24.retry import RetryPolicy
from b24_mcp.errors import B24Error
from b24_mcp.journal.drain import IDLE_FIRST, IDLE_MAX, MORE_GAP, Drainer, Poller
from b24_mcp.journal.store import Journal
from b24_mcp.standin import StandIn
from tests.values import CODE, TOKEN, webhook_vars

pytestmark = pytest.mark.anyio


class Portal:
    """The stand-in portal behind httpx, recording Event.get's parameters; `fail_at` makes that call (1-based)
    and every later one answer HTTP 502 with an HTML page, as a failing proxy does."""

    def __init__(self, standin: StandIn, fail_at: int | None = None) -> None:
        self.standin = standin
        self.calls: list[dict[str, Any]] = []
        self.fail_at = fail_at

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("imbot.v2.Event.get"):
            self.calls.append(json.loads(request.content))
            if self.fail_at is not None and len(self.calls) >= self.fail_at:
                return httpx.Response(502, content=b"<html>Bad gateway</html>")
        return demo.answer(self.standin, request)


def client_for(portal: Portal, **env: str) -> B24Client:
    """A client of `portal` that retries at once (these tests are about what is retried, not how long it waits)."""
    settings = config.load(webhook_vars(B24_RATE_LIMIT="1000", B24_RATE_BURST="1000", **env))
    return make_client(settings, make_http(settings.timeout, httpx.MockTransport(portal)), RetryPolicy(at_once))


def at_once(attempt: int, base: float, cap: float) -> float:
    return 0.0


def chatty(extra: int = 40) -> StandIn:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    for n in range(extra):
        standin.chatter.say("chat5", 1 + n % 2, f"status update number {n}", f"2025-03-18T10:{n % 60:02d}:00+01:00")
    return standin


def once_each(journal: Journal, standin: StandIn) -> None:
    """Every event the portal ever queued is journaled exactly once, and the messages are the portal's."""
    events = journal.db.execute("SELECT count(*), count(DISTINCT event_id) FROM changes").fetchone()
    assert tuple(events) == (standin.events.next_id - 1001,) * 2
    readable = {m["id"] for m in standin.messages.values() if m["chatId"] in (5, 12, 31)}
    assert {row[0] for row in journal.db.execute("SELECT id FROM messages")} == readable


async def test_pages_are_read_with_limit_confirmed_by_offset_and_spaced_while_has_more() -> None:
    standin = chatty()
    portal = Portal(standin)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    journal = Journal(":memory:", days=3650)
    drainer = Drainer(lambda: client_for(portal), journal, limit=25, sleep=sleep)
    drained = await drainer.drain()
    assert drained is not None and drained.pages == 3 and drained.events == 61
    assert [call.get("offset") for call in portal.calls] == [None, 1026, 1051]
    assert all(call["limit"] == 25 and call["botToken"] == TOKEN for call in portal.calls)
    assert slept == [MORE_GAP, MORE_GAP]
    assert len(standin.events) == 11  # the last page is confirmed by the next drain, not before
    await drainer.drain()
    assert len(standin.events) == 0 and portal.calls[-1]["offset"] == 1062
    once_each(journal, standin)


async def test_a_portal_failing_mid_drain_loses_nothing_and_doubles_nothing() -> None:
    standin = chatty()
    portal = Portal(standin, fail_at=2)
    journal = Journal(":memory:", days=3650)

    async def sleep(seconds: float) -> None:
        pass

    drainer = Drainer(lambda: client_for(portal, B24_TIMEOUT="1"), journal, limit=25, sleep=sleep)
    with pytest.raises(B24Error):
        await drainer.drain()
    assert journal.position() == 1026  # the first page only
    portal.fail_at = None
    await drainer.drain()
    once_each(journal, standin)


async def test_one_drainer_per_journal_file(tmp_path: Path) -> None:
    standin = chatty(5)
    portal = Portal(standin)
    path = tmp_path / "journal.sqlite3"
    first = Drainer(lambda: client_for(portal), Journal(path, days=3650))
    second = Drainer(lambda: client_for(portal), Journal(path, days=3650))
    assert first._lock is not None
    first._lock.acquire()  # the first is draining (an OS lock on a file: another process would see it the same)
    try:
        assert await second.drain() is None
        assert portal.calls == []
    finally:
        first._lock.release()
    assert await second.drain() is not None
    once_each(first.journal, standin)  # what the second journaled, the first reads


async def test_the_poll_backs_off_while_the_queue_is_empty_and_resumes_when_events_come() -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    portal = Portal(standin)
    now = [1_000_000.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    drainer = Drainer(lambda: client_for(portal), Journal(":memory:", days=3650, clock=lambda: now[0]), sleep=sleep)
    poller = Poller(drainer, sleep=sleep, clock=lambda: now[0])
    intervals = []
    for _ in range(6):
        await poller.once()
        intervals.append(poller.interval)
        await sleep(poller.interval)
    assert intervals == [IDLE_FIRST, 10.0, 20.0, IDLE_MAX, IDLE_MAX, IDLE_MAX]
    standin.chatter.say("chat5", 1, "anyone there?", "2025-03-19T10:00:00+01:00")
    await poller.once()
    assert poller.interval == IDLE_FIRST


async def test_a_poll_just_after_another_process_drained_sends_nothing() -> None:
    portal = Portal(StandIn(bot_token=TOKEN, webhook_code=CODE))
    journal = Journal(":memory:", days=3650)
    drainer = Drainer(lambda: client_for(portal), journal)
    journal.set_meta("drained_at", "1000000.0")
    await Poller(drainer, clock=lambda: 1000001.0).once()
    assert portal.calls == []


def test_a_background_reservation_leaves_half_the_bucket_to_interactive_calls() -> None:
    """A burst of interactive calls up to half the bucket waits for nothing the journal took."""
    now = [0.0]
    with_journal, without = LeakyBucket(2, 10, clock=lambda: now[0]), LeakyBucket(2, 10, clock=lambda: now[0])
    spare = 5
    taken = 0
    for _ in range(20):  # the journal polls as often as it can: it gets no slot past half the bucket
        if with_journal.reserve(0.0, spare=spare) is not None:
            taken += 1
    assert 0 < taken <= with_journal.capacity - spare
    burst = with_journal.capacity - spare
    assert [with_journal.reserve() for _ in range(burst)] == [without.reserve() for _ in range(burst)] == [0.0] * burst
    assert with_journal.reserve(0.0, spare=spare) is None  # and none while the burst holds the bucket


async def test_a_chat_that_appears_has_its_history_read_back_in_bounded_pages() -> None:
    standin = chatty(120)  # chat5: its 8 messages and 120 more, all said before the journal started
    with standin.events.lock:
        standin.events.events.clear()
    new = standin.chatter.say("chat5", 2, "first one the journal sees", "2025-03-19T09:00:00+01:00")
    portal = Portal(standin)
    journal = Journal(":memory:", days=3650)
    contexts: list[int] = []
    answer = portal.__call__

    def counting(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("getContext"):
            contexts.append(json.loads(request.content)["messageId"])
        return answer(request)

    settings = config.load(webhook_vars(B24_RATE_LIMIT="1000", B24_RATE_BURST="1000"))
    client = make_client(settings, make_http(settings.timeout, httpx.MockTransport(counting)))
    await Drainer(lambda: client, journal, backfill=2).drain()
    assert len(contexts) == 2 and contexts[0] == new  # two pages back from the first message journaled
    kept = [row[0] for row in journal.db.execute("SELECT id FROM messages ORDER BY id")]
    assert kept == sorted(m for m in standin.messages if standin.messages[m]["chatId"] == 5)[-101:]
    assert journal.db.execute("SELECT count(*) FROM changes").fetchone()[0] == 1  # history is not news
    await Drainer(lambda: client, journal, backfill=2).drain()
    assert len(contexts) == 2  # read back once


async def test_a_burst_of_get_chat_while_the_journal_drains_is_never_refused_and_never_waits_behind_it() -> None:
    """Against a portal with Bitrix24's bucket (1/s, so that it hardly drains during the test): the journal has sent
    3 pages (3 of the client's 9 slots); 4 get_chat calls go out, the journal asks for its next page, 2 more get_chat
    calls follow. The journal's page waits for a spare half of the bucket, so all 6 go out at once: had it taken a
    slot, the last would wait for it. The portal refuses nothing."""
    from tests.portal import StandInPortal

    with StandInPortal(webhook_code=CODE, bot_token=TOKEN, rate=1, burst=10) as portal:
        for n in range(60):
            portal.standin.chatter.say("chat5", 1, f"note {n}", "2025-03-18T10:00:00+01:00")
        settings = config.load(webhook_vars(portal.webhook_url, B24_RATE_LIMIT="1", B24_RATE_BURST="10"))
        async with make_http(settings.timeout) as http:
            client = make_client(settings, http)
            paused, burst_out = anyio.Event(), anyio.Event()
            gaps = [0]

            async def sleep(seconds: float) -> None:  # between pages (2 s) and while deferred (1 s): shortened
                gaps[0] += 1
                if gaps[0] == 3:
                    paused.set()
                    await burst_out.wait()
                    return  # the next page at once: it meets the burst in the bucket
                await anyio.sleep(min(seconds, 0.05))

            drainer = Drainer(lambda: client, Journal(":memory:", days=3650), limit=1, sleep=sleep)
            waits: list[float] = []

            async def on_wait(seconds: float, why: str) -> None:
                waits.append(seconds)

            async def get_chat() -> None:
                params = {**client.bot_params(None, None), "dialogId": "chat5"}
                await client.call("imbot.v2.Chat.get", params, dict, on_wait)

            async with anyio.create_task_group() as tg:
                tg.start_soon(drainer.drain)
                with anyio.fail_after(10):
                    await paused.wait()
                    async with anyio.create_task_group() as burst:
                        for _ in range(4):
                            burst.start_soon(get_chat)
                        await anyio.lowlevel.checkpoint()  # each call has taken its slot: now the journal tries
                        burst_out.set()
                        for _ in range(3):
                            await anyio.lowlevel.checkpoint()  # the journal has asked the bucket for its slot
                        for _ in range(2):
                            burst.start_soon(get_chat)
                tg.cancel_scope.cancel()  # the journal's page would wait seconds for its spare half at 1/s
        methods = [r.path.rsplit("/", 1)[-1] for r in portal.requests if "/rest/" in r.path]
        assert methods == ["imbot.v2.Event.get"] * 3 + ["imbot.v2.Chat.get"] * 6
        assert portal.refusals == 0 and waits == []


async def test_an_inbox_call_waits_for_two_pages_at_most_and_says_more_are_waiting() -> None:
    standin = chatty(40)
    portal = Portal(standin)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    journal = Journal(":memory:", days=3650)
    drainer = Drainer(lambda: client_for(portal), journal, limit=10, sleep=sleep)
    await drainer.refresh(5.0, now=1e12)  # the last drain long ago
    assert len(portal.calls) == 2 and slept == [MORE_GAP]  # the background poll reads the rest
    assert journal.stats()["behind"] is True


async def test_a_full_disk_fails_the_drain_by_name_and_the_next_one_resumes(tmp_path: Path) -> None:
    standin = chatty(200)
    portal = Portal(standin)
    journal = Journal(tmp_path / "journal.sqlite3", days=3650)

    async def sleep(seconds: float) -> None:
        pass

    drainer = Drainer(lambda: client_for(portal), journal, limit=50, sleep=sleep)
    pages = journal.db.execute("PRAGMA page_count").fetchone()[0]
    journal.db.execute(f"PRAGMA max_page_count = {pages + 8}")  # room for a page or two of events, not all
    with pytest.raises(B24Error, match=r"could not be written .*full"):
        await drainer.drain()
    held = journal.position()
    assert held is not None and held < standin.events.next_id
    journal.db.execute("PRAGMA max_page_count = 1073741823")
    await drainer.drain()
    once_each(journal, standin)

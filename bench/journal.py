"""The journal's figures; prints JSON.

    uv run python bench/journal.py [--messages 100000]

- search: search_messages through the SDK's in-memory client over a journal file of N messages, p50/p99 of 200
  calls, against the bare FTS5 query (the same MATCH, ORDER BY date, LIMIT 20) on the same file in the same run;
- drain: events per second from a stand-in portal answering at once (httpx MockTransport), pages of 1000, the 2 s
  gap between pages while hasMore taken out (it is the docs' rule, not b24-mcp's cost);
- idle: Event.get calls an idle journal's poll makes per minute (simulated clock: the back-off, not a wall wait);
- requests: portal requests an agent needs for "what's new" and "where did we discuss X" on the demo's chats,
  with the journal (one drain at most) and without (every chat's latest window; every page of every chat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from mcp import Client  # noqa: E402

from b24_mcp import demo  # noqa: E402
from b24_mcp import settings as config  # noqa: E402
from b24_mcp.app import make_client  # noqa: E402
from b24_mcp.bitrix24.events import Event  # noqa: E402
from b24_mcp.bitrix24.network import make_http  # noqa: E402
from b24_mcp.journal import drain  # noqa: E402
from b24_mcp.journal.store import Journal, fts_query  # noqa: E402
from b24_mcp.server import build_server  # noqa: E402
from b24_mcp.standin import StandIn  # noqa: E402
from tests.values import CODE, TOKEN, webhook_vars  # noqa: E402

WORDS = "invoice export release staging ticket build deploy review budget meeting customer contract".split()
FAST = {"B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}


def synthetic(n: int, first_event: int = 1) -> list[Event]:
    events = []
    for i in range(n):
        words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7, 11))
        text = f"message {i} about the {words}; ACME{i % 500} and more words to make it a sentence"
        minute = i % 60
        events.append(
            Event.model_validate(
                {
                    "eventId": first_event + i,
                    "type": "ONIMBOTV2MESSAGEADD",
                    "date": f"2026-11-{1 + (i // 5000) % 28:02d}T10:{minute:02d}:00+00:00",
                    "data": {
                        "message": {"id": 100_000 + i, "chatId": 5 + i % 20, "authorId": 1 + i % 9, "text": text,
                                    "date": f"2026-11-{1 + (i // 5000) % 28:02d}T10:{minute:02d}:00+00:00"},
                        "chat": {"id": 5 + i % 20, "dialogId": f"chat{5 + i % 20}", "name": f"Chat {i % 20}"},
                        "user": {"id": 1 + i % 9, "name": f"Person {i % 9}"},
                    },
                }
            )
        )  # fmt: skip
    return events


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def search(n: int, directory: Path) -> dict[str, Any]:
    path = directory / "journal.sqlite3"
    journal = Journal(path, days=3650)
    started = time.perf_counter()
    events = synthetic(n)
    for at in range(0, n, 1000):
        journal.apply(events[at : at + 1000], at + 1001)
    applied = time.perf_counter() - started
    journal.set_meta("drained_at", repr(time.time() + 3600))  # fresh: the tool reads, it does not drain
    queries = ["ACME42 invoice", "staging deploy", "budget", "contract review", "customer"]
    bare: list[float] = []
    for i in range(200):
        t0 = time.perf_counter()
        journal.db.execute(
            "SELECT m.id, snippet(messages_fts, 0, '**', '**', '…', 16) FROM messages_fts JOIN messages m ON "
            "m.id = messages_fts.rowid WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT 20",
            (fts_query(queries[i % len(queries)]),),
        ).fetchall()
        bare.append((time.perf_counter() - t0) * 1000)
    journal.close()
    env = webhook_vars(B24_JOURNAL="on", B24_JOURNAL_FILE=str(path), B24_JOURNAL_DAYS="3650", **FAST)
    server = build_server(config.load(env), transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    tool: list[float] = []
    async with Client(server) as client:
        await client.call_tool("search_messages", {"query": "warm"})
        for i in range(200):
            t0 = time.perf_counter()
            result = await client.call_tool("search_messages", {"query": queries[i % len(queries)]})
            tool.append((time.perf_counter() - t0) * 1000)
            assert not result.is_error
    return {
        "messages": n,
        "journal_apply_events_per_s": round(n / applied),
        "tool_p50_ms": round(statistics.median(tool), 2),
        "tool_p99_ms": round(percentile(tool, 0.99), 2),
        "bare_fts_p50_ms": round(statistics.median(bare), 2),
        "bare_fts_p99_ms": round(percentile(bare, 0.99), 2),
    }


async def drain_rate(n: int) -> dict[str, Any]:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    for i in range(n):
        standin.chatter.say("chat5", 1 + i % 2, f"line {i}", "2026-11-20T10:00:00+00:00")
    settings = config.load(webhook_vars(**FAST))
    http = make_http(settings.timeout, httpx.MockTransport(lambda r: demo.answer(standin, r)))
    client = make_client(settings, http)
    drain.MORE_GAP = 0.0
    with tempfile.TemporaryDirectory() as directory:
        drainer = drain.Drainer(lambda: client, Journal(Path(directory) / "j.sqlite3", days=3650), limit=1000)
        started = time.perf_counter()
        drained = await drainer.drain()
        seconds = time.perf_counter() - started
    await http.aclose()
    assert drained is not None
    return {"events": drained.events, "pages": drained.pages, "events_per_s": round(drained.events / seconds)}


async def idle_requests() -> dict[str, Any]:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    settings = config.load(webhook_vars(**FAST))
    calls = [0]

    def portal(request: httpx.Request) -> httpx.Response:
        calls[0] += request.url.path.endswith("Event.get")
        return demo.answer(standin, request)

    client = make_client(settings, make_http(settings.timeout, httpx.MockTransport(portal)))
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    drainer = drain.Drainer(lambda: client, Journal(":memory:", days=3650, clock=lambda: now[0]), sleep=sleep)
    poller = drain.Poller(drainer, sleep=sleep, clock=lambda: now[0])
    await poller.once()  # the history: then the queue stays empty
    first, start = calls[0], now[0]
    while now[0] - start < 3600:
        await poller.once()
        await sleep(poller.interval)
    return {"event_get_per_minute_idle": round((calls[0] - first) / 60, 2), "interval_s": poller.interval}


async def requests() -> dict[str, Any]:
    counted: dict[str, int] = {}

    journal_file = Path(tempfile.mkdtemp()) / "j.sqlite3"
    standins: list[StandIn] = []

    def server(journal: bool) -> tuple[Any, dict[str, int]]:
        standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
        standins.append(standin)
        for i in range(600):  # 200 more messages in each chat: a few pages of history
            dialog = ["chat5", "chat12", "1"][i % 3]
            standin.chatter.say(dialog, 1, f"routine note {i}", f"2025-03-18T12:{i % 60:02d}:00+01:00")
        seen = {"n": 0}

        def portal(request: httpx.Request) -> httpx.Response:
            seen["n"] += 1
            return demo.answer(standin, request)

        extra = {"B24_JOURNAL": "on", "B24_JOURNAL_FILE": str(journal_file)} if journal else {}
        env = webhook_vars(B24_JOURNAL_DAYS="3650", **extra, **FAST) if journal else webhook_vars(**FAST)
        return build_server(config.load(env), transport=httpx.MockTransport(portal)), seen

    chats = ["chat5", "chat12", "1"]  # without the journal the agent must be told them: no method lists them
    for journal in (False, True):
        mcp_server, seen = server(journal)
        standin = standins[-1]
        async with Client(mcp_server) as client:
            seen["n"] = 0
            if journal:
                for _ in range(20):  # the history, two pages per call (the background poll would read it too)
                    first = await client.call_tool("get_updates", {"since": "2025-03-18T00:00:00+01:00"})
                    if not (first.structured_content or {})["journal"].get("behind"):
                        break
                    Journal(journal_file).set_meta("drained_at", "0")
                counted["first_drain_of_the_history_requests"] = seen["n"]
                seen["n"] = 0
                Journal(journal_file).set_meta("drained_at", "0")  # a few seconds later, a message later
                standin.chatter.say("chat5", 2, "new here", "2025-03-19T09:00:00+01:00")
                await client.call_tool("get_updates", {})
            else:
                for chat in chats:
                    await client.call_tool("get_messages", {"dialogId": chat})
            counted[f"whats_new_{'with' if journal else 'without'}_journal"] = seen["n"]
            seen["n"] = 0
            if journal:
                await client.call_tool("search_messages", {"query": "export"})
            else:  # every page of every chat, back to its first message
                for chat in chats:
                    result = await client.call_tool("get_messages", {"dialogId": chat, "range": 50})
                    while (result.structured_content or {}).get("hasPrevPage"):
                        first = result.structured_content["messages"][0]["id"]
                        result = await client.call_tool("get_messages", {"beforeMessageId": first, "range": 50})
            counted[f"where_discussed_{'with' if journal else 'without'}_journal"] = seen["n"]
    return counted


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--drain", type=int, default=20_000)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        figures = {
            "search": await search(ns.messages, Path(directory)),
            "drain": await drain_rate(ns.drain),
            "idle": await idle_requests(),
            "requests": await requests(),
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

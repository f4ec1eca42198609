"""A drainer killed mid-drain (SIGKILL, a real process against the stand-in portal over HTTP) loses no event and
doubles none: the next drain, in this process, resumes from the position the dead one committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from b24_mcp import settings as config
from b24_mcp.app import make_client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.journal.drain import Drainer
from b24_mcp.journal.store import Journal
from tests.e2e.helpers import kill_left, webhook_env
from tests.portal import StandInPortal
from tests.values import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DRAINER = """
import sys, anyio
from b24_mcp import settings as config
from b24_mcp.app import make_client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.journal import drain
from b24_mcp.journal.store import Journal
import os
drain.MORE_GAP = 0.0  # as fast as it can go: the kill lands anywhere in a page's round trip or its commit
async def main():
    settings = config.load(os.environ)
    client = make_client(settings, make_http(settings.timeout))
    drainer = drain.Drainer(lambda: client, Journal(sys.argv[1], days=3650), limit=3)
    for _ in range(10_000):
        await drainer.drain()
anyio.run(main)
"""


def kill_mid_drain(portal: StandInPortal, env: dict[str, str], path: Path, after: int) -> None:
    """Start the drainer and SIGKILL it the moment the portal answers its `after`-th Event.get."""
    queue = portal.standin.events
    reached = threading.Event()
    page = queue.page

    def counted(offset: int | None, limit: int) -> dict[str, Any]:
        answer = page(offset, limit)
        if queue.pages >= after:
            reached.set()
        return answer

    queue.page = counted  # type: ignore[method-assign]
    proc = subprocess.Popen([sys.executable, "-c", DRAINER, str(path)], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        assert reached.wait(30), proc.stderr.read() if proc.stderr and proc.poll() is not None else "no page"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        kill_left([proc])
        queue.page = page  # type: ignore[method-assign]


async def test_a_drainer_killed_mid_drain_loses_and_doubles_nothing(http_portal: StandInPortal, tmp_path: Path) -> None:
    after = 15  # pages: well into the drain, which reads 51 pages of 3
    standin = http_portal.standin
    for n in range(150):
        standin.chatter.say("chat5", 1 + n % 2, f"note {n}", f"2025-03-18T10:{n % 60:02d}:00+01:00")
    path = tmp_path / "journal.sqlite3"
    env = webhook_env(http_portal, B24_RATE_LIMIT="1000", B24_RATE_BURST="1000", B24_LOG_LEVEL="ERROR")
    await anyio.to_thread.run_sync(kill_mid_drain, http_portal, env, path, after)
    assert 0 < len(standin.events)  # killed before the queue was read through
    settings = config.load(env)
    client = make_client(settings, make_http(settings.timeout))
    journal = Journal(path, days=3650)
    drained = await Drainer(lambda: client, journal, limit=1000).drain()
    assert drained is not None
    await Drainer(lambda: client, journal).drain()  # confirms the last page
    assert len(standin.events) == 0
    pushed = standin.events.next_id - 1001
    assert (
        tuple(journal.db.execute("SELECT count(*), count(DISTINCT event_id) FROM changes").fetchone()) == (pushed,) * 2
    )
    readable = {m["id"] for m in standin.messages.values() if m["chatId"] in (5, 12, 31)}
    assert {row[0] for row in journal.db.execute("SELECT id FROM messages")} == readable
    await client.http.aclose()


def hold_lock(lock: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Another process that takes the journal's drain lock and keeps it; returned once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, lock], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
    return holder


HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1], timeout=0, thread_local=False)
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


async def test_while_another_process_drains_this_one_does_not_and_takes_over_when_it_dies(
    http_portal: StandInPortal, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite3"
    env = webhook_env(http_portal, B24_LOG_LEVEL="ERROR")
    settings = config.load(env)
    client = make_client(settings, make_http(settings.timeout))
    drainer = Drainer(lambda: client, Journal(path, days=3650))
    holder = await anyio.to_thread.run_sync(hold_lock, f"{path}.lock", env)
    try:
        assert await drainer.drain() is None
        assert http_portal.count("imbot.v2.Event.get") == 0
        os.kill(holder.pid, signal.SIGKILL)  # its OS lock dies with it
        await anyio.to_thread.run_sync(holder.wait, 10)
    finally:
        kill_left([holder])
    drained = await drainer.drain()
    assert drained is not None and drained.events > 0
    await client.http.aclose()

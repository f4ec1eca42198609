"""Replicas as a team runs them: three `b24-mcp --transport streamable-http` processes, one Redis, one portal.

The processes share nothing but a real `redis-server` (tests/redis_server.py) and the loopback stand-in portal,
whose leaky bucket is on (20/s, 10 at once). Requests carry a bearer token from a B24_HTTP_TOKENS_FILE. What is
shown: a burst spread over the replicas is never refused by the portal; an expiry under load costs one refresh
across all of them; a replica killed mid-refresh, before the OAuth server rotated, loses nothing. Time ratios are
bench/team.py's, not asserted.
The tests run in order on the same replicas (the last one kills one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis

from b24_mcp.team import digest
from tests.e2e.helpers import oauth_env
from tests.portal import OAuthSettings, StandInPortal
from tests.redis_server import RedisServer, free_port
from tests.values import HTTP_HEADERS, PROTOCOL_VERSION, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

APP = OAuthSettings()
BEARER = "teamBEARERtoken0123456789abcdef"
RATE, BURST = 10, 10  # the portal's bucket: at 10/s the headroom below is 400 ms of jitter
HEADERS = {**HTTP_HEADERS, "MCP-Protocol-Version": PROTOCOL_VERSION}


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    port: int
    stderr: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def start(env: dict[str, str], stderr: Path) -> Replica:
    port = free_port()
    command = [sys.executable, "-m", "b24_mcp", "--transport", "streamable-http", "--host", "127.0.0.1"]
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT
        )
    return Replica(process, port, stderr)


def wait_serving(replica: Replica) -> None:
    deadline = time.monotonic() + 30
    while b"serving MCP over Streamable HTTP" not in replica.stderr.read_bytes():
        assert replica.process.poll() is None, replica.stderr.read_text()
        assert time.monotonic() < deadline, f"not serving within 30 s: {replica.stderr.read_text()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def portal() -> Iterator[StandInPortal]:
    with StandInPortal(oauth=OAuthSettings(), rate=RATE, burst=BURST) as p:
        yield p


@pytest.fixture(scope="module")
def replicas(
    portal: StandInPortal, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Replica]]:
    tmp = tmp_path_factory.mktemp("team")
    (tmp / "tokens").write_text(f"# the test's one user\n{digest(BEARER)}\n")
    with redis.Redis(port=redis_server.port, db=1) as r:
        r.flushdb()
    env = oauth_env(
        portal,
        tmp / "unused-token-file.json",  # with Redis the pair lives there, not here
        B24_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/1",
        B24_HTTP_TOKENS_FILE=str(tmp / "tokens"),
        B24_RATE_LIMIT=str(RATE),
        B24_RATE_BURST=str(BURST - 4),  # four of headroom (400 ms at 10/s) for jitter on a loaded 2-core machine
        B24_TIMEOUT="1",  # a refresh lock outlives a dead replica by at most 2 s (B24_TIMEOUT + 2 x LOCK_MARGIN)
    )
    started = [start(env, tmp / f"replica{i}.log") for i in range(3)]
    try:
        for replica in started:
            wait_serving(replica)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(10)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(5)
        logged = "".join(r.stderr.read_text() for r in started)
        for secret in (BEARER, APP.client_secret, *portal.current_access_tokens):
            assert secret not in logged


async def call(http: httpx.AsyncClient, replica: Replica, n: int = 1, token: str | None = BEARER) -> httpx.Response:
    params = {"name": "get_chat", "arguments": {"dialogId": "chat5"}}
    body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params}
    auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await http.post(replica.url, json=body, headers={**HEADERS, **auth})


def result_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def burst(replicas: list[Replica], n: int) -> list[dict[str, Any]]:
    """`n` get_chat calls at once, spread round-robin over the replicas; every result."""
    results: list[dict[str, Any]] = []

    async def one(http: httpx.AsyncClient, i: int) -> None:
        results.append(result_of(await call(http, replicas[i % len(replicas)], i)))

    with anyio.fail_after(60):
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http, anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, http, i)
    return results


async def test_a_burst_over_three_replicas_is_never_refused(portal: StandInPortal, replicas: list[Replica]) -> None:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        refused = await call(http, replicas[0], token=None)
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.headers["www-authenticate"]
        assert (await call(http, replicas[1], token="wrongTOKEN")).status_code == 401
    results = await burst(replicas, 20)  # twice what the portal holds at once
    assert [r for r in results if r["isError"]] == []
    assert len(results) == 20 and portal.count() == 20
    assert portal.refusals == 0  # three processes, one bucket: never a QUERY_LIMIT_EXCEEDED


async def test_an_expiry_under_load_costs_one_refresh_across_replicas(
    portal: StandInPortal, replicas: list[Replica]
) -> None:
    before = portal.refresh_count
    portal.expire_access_token()
    results = await burst(replicas, 10)
    assert [r for r in results if r["isError"]] == []
    assert (portal.refresh_count - before, portal.invalid_grants) == (1, 0)
    assert portal.refusals == 0


async def test_a_replica_killed_before_the_rotation_loses_nothing(
    portal: StandInPortal, replicas: list[Replica]
) -> None:
    before = portal.refresh_count
    asked = sum(1 for r in portal.requests if r.path.startswith("/oauth/token"))
    portal.refresh_delay = 0.5  # the OAuth server is slow: the kill lands while the refresh is under way
    portal.drop_abandoned_refresh = True
    portal.expire_access_token()
    victim, *rest = replicas
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        async with anyio.create_task_group() as tg:

            async def doomed() -> None:
                with pytest.raises(httpx.TransportError):  # its replica dies under it
                    await call(http, victim)

            tg.start_soon(doomed)
            with anyio.fail_after(10):
                # The portal records in its own threads: polled, bounded.
                while sum(1 for r in portal.requests if r.path.startswith("/oauth/token")) == asked:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            os.kill(victim.process.pid, signal.SIGKILL)  # holding the refresh lock, its request in flight
            victim.process.wait(10)
        portal.refresh_delay = 0.0
        # The next call, on another replica, waits out the dead replica's lock, finds the stored pair whole and
        # refreshes it once; a third replica then takes the renewed pair from Redis.
        first = result_of(await call(http, rest[0]))
        second = result_of(await call(http, rest[1]))
    assert not first["isError"] and not second["isError"], (first, second)
    assert portal.invalid_grants == 0
    assert portal.refresh_count - before == 1  # the dead replica's refresh never happened; one did
    abandoned = [r for r in portal.requests if r.path.startswith("/oauth/token")][asked]
    assert abandoned.status == 0  # the killed replica's refresh reached the OAuth server and got no answer

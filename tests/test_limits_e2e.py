"""Rate limits and faults end to end: concurrent tool calls over one stdio session against a stand-in portal
that runs Bitrix24's leaky bucket, counting what the portal received and refused. No timing is asserted
(shared machines are noisy); the figures for time live in bench/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

from tests.e2e import CODE, TOKEN, spawned, text_of, webhook_env
from tests.portal import Fault, StandInPortal

pytestmark = pytest.mark.anyio


async def burst(client: Any, n: int) -> list[Any]:
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        results[i] = await client.call_tool("get_chat", {"dialogId": "chat5"})

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return results


@pytest.fixture
def limited(ca: trustme.CA) -> Iterator[StandInPortal]:
    """A portal like a standard plan, scaled up 5x so the test is quick: drains 10/s, holds 6."""
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN, rate=10, burst=6) as portal:
        yield portal


async def test_burst_with_matching_settings_is_never_refused(limited: StandInPortal, tmp_path: Path) -> None:
    async with spawned(webhook_env(limited, B24_RATE_LIMIT="10", B24_RATE_BURST="6"), tmp_path / "err") as client:
        results = await burst(client, 20)
    assert all(not r.is_error for r in results), [text_of(r) for r in results if r.is_error]
    assert limited.refusals == 0
    assert limited.count() == 20


async def test_burst_against_a_stricter_portal_still_answers_every_call(limited: StandInPortal, tmp_path: Path) -> None:
    # The client believes the portal allows 40/s and 30 at once; the portal allows 10/s and 6.
    async with spawned(webhook_env(limited, B24_RATE_LIMIT="40", B24_RATE_BURST="30"), tmp_path / "err") as client:
        results = await burst(client, 20)
    assert all(not r.is_error for r in results), [text_of(r) for r in results if r.is_error]
    assert limited.refusals > 0  # the portal did refuse some...
    assert limited.count() == 20 + limited.refusals  # ...and each refused request was sent again, no more


async def test_concurrent_calls_run_in_parallel(ca: trustme.CA, tmp_path: Path) -> None:
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN, delay=0.3) as portal:
        async with spawned(webhook_env(portal, B24_RATE_BURST="30"), tmp_path / "err") as client:
            results = await burst(client, 12)
        assert all(not r.is_error for r in results)
        assert portal.max_in_flight == 12  # nothing serialised them: all were at the portal at once


@pytest.mark.parametrize(
    ("faults", "requests", "outcome"),
    [
        ([Fault.error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")] * 2, 3, None),
        ([Fault.raw(429, b"Too Many Requests", "text/plain")], 2, None),
        ([Fault.raw(503, b"<html>busy</html>", "text/html")] * 2, 3, None),
        ([Fault.drop(), Fault.drop()], 3, None),
        ([Fault.drop()] * 3, 3, "failed"),
        ([Fault.raw(502, b"<html>bad gateway</html>", "text/html")] * 3, 3, "HTTP 502"),
        ([Fault.error(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload")], 1, "OVERLOAD_LIMIT"),
        ([Fault.error(403, "ACCESS_DENIED", "Access denied")], 1, "ACCESS_DENIED"),
        ([Fault.error(401, "expired_token", "The access token provided has expired.")], 1, "expired_token"),
        ([Fault.error(403, "insufficient_scope", "higher privileges")], 1, "insufficient_scope"),
        ([Fault.error(500, "INTERNAL_SERVER_ERROR", "Internal server error")], 1, "INTERNAL_SERVER_ERROR"),
        ([Fault.time_limit(600)], 1, "available again in"),
    ],
)
async def test_retry_rules_by_error_code(
    https_portal: StandInPortal, tmp_path: Path, faults: list[Any], requests: int, outcome: str | None
) -> None:
    https_portal.script(*faults)
    async with spawned(webhook_env(https_portal, B24_RATE_LIMIT="50"), tmp_path / "err") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert https_portal.count() == requests
    if outcome is None:
        assert not result.is_error, text_of(result)
    else:
        assert result.is_error and outcome in text_of(result)


async def test_operation_time_limit_waits_for_the_reset_it_was_told(
    https_portal: StandInPortal, tmp_path: Path
) -> None:
    async with spawned(webhook_env(https_portal), tmp_path / "err") as client:
        https_portal.script(Fault.ok({"chat": https_portal.chats["chat5"]}, time_block={"operating_reset_at": 0}))
        await client.call_tool("get_chat", {"dialogId": "chat5"})  # learns the reset time (already past)
        https_portal.script(Fault.time_limit(0))
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert not result.is_error, text_of(result)
    assert https_portal.count() == 3  # the answer, the refusal, and the one retry


async def test_trickling_portal_is_cut_off_at_the_bound(https_portal: StandInPortal, tmp_path: Path) -> None:
    https_portal.script(Fault.trickle(10), Fault.trickle(10), Fault.trickle(10))
    async with spawned(webhook_env(https_portal, B24_TIMEOUT="0.5"), tmp_path / "err") as client:
        with anyio.fail_after(15):
            result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert (
        result.is_error
        and "did not answer in time (B24_TIMEOUT=0.5 s a request, 1.5 s for the whole call)" in text_of(result)
    )

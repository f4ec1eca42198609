"""A rotated pair is never lost: the stand-in token server rotates the pair, then answers late, drops the connection
or sends half an answer, while the call that wanted the renewal is cancelled, runs out of time, or ends.

Once Bitrix24 has rotated, the old refresh token is dead: the only copy of the new pair is the answer on its way.
Each test checks what the next call sees (no invalid_grant, no second refresh) and what the store holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client

from b24_mcp import settings as config
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.oauth import RENEWALS, OAuthSession
from b24_mcp.bitrix24.token_file import TokenFile
from b24_mcp.bitrix24.token_server import TokenPair
from b24_mcp.errors import AuthError
from b24_mcp.server import build_server
from tests.portal import OAuthSettings, StandInPortal, rotated
from tests.values import OAUTH_ACCESS, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH, oauth_vars

pytestmark = pytest.mark.anyio

SEED = TokenPair(OAUTH_ACCESS, OAUTH_REFRESH)


@pytest.fixture
def portal() -> Iterator[StandInPortal]:
    with StandInPortal(oauth=OAuthSettings()) as p:
        yield p


def session(portal: StandInPortal, file: Path, http: httpx.AsyncClient, limit: float = 10.0) -> OAuthSession:
    return OAuthSession(
        http=http,
        token_url=f"{portal.base_url}/oauth/token/",
        client_id=OAUTH_CLIENT_ID,
        client_secret=OAUTH_CLIENT_SECRET,
        seed=SEED,
        store=TokenFile(file),
        limit=limit,
    )


def saved_refresh(file: Path) -> str | None:
    try:
        return str(json.loads(file.read_text())["refresh_token"])
    except (OSError, ValueError):
        return None


async def until_saved(portal: StandInPortal, file: Path) -> None:
    """Wait (bounded) until the token file holds the pair the token server last handed out."""
    with anyio.fail_after(10):
        while saved_refresh(file) not in portal.standin.refresh_tokens:  # noqa: ASYNC110 - a file, not an event
            await anyio.sleep(0.01)


async def test_a_call_cancelled_by_the_client_mid_renewal_keeps_the_rotated_pair(
    portal: StandInPortal, tmp_path: Path
) -> None:
    """The SDK client gives up on a call (`notifications/cancelled`) after the token server rotated and before it
    answered: the renewal goes on, its pair is saved, and the next call needs no refresh."""
    file = tmp_path / "t.json"
    portal.after_rotation, portal.rotated_delay = "late", 0.3
    server = build_server(config.load(oauth_vars(portal.base_url, B24_TOKEN_FILE=str(file))))
    async with Client(server, mode="legacy") as client:
        first = await client.call_tool("get_chat", {"dialogId": "chat5"})
        assert not first.is_error
        portal.expire_access_token()
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "get_chat", {"dialogId": "chat5"})
            await rotated(portal)
            tg.cancel_scope.cancel()  # the host's user pressed stop
        await until_saved(portal, file)
        portal.after_rotation = None
        again = await client.call_tool("get_chat", {"dialogId": "chat5"})
        assert not again.is_error
    assert (portal.refresh_count, portal.invalid_grants) == (1, 0)


async def test_an_answer_slower_than_b24_timeout_is_kept(portal: StandInPortal, tmp_path: Path) -> None:
    """httpx bounds each phase by B24_TIMEOUT; a token answer slower than that still carries the rotated pair."""
    file = tmp_path / "t.json"
    portal.after_rotation, portal.rotated_delay = "late", 0.3
    async with make_http(0.1) as http:  # B24_TIMEOUT=0.1: one read phase is shorter than the answer takes
        s = session(portal, file, http, limit=5.0)
        assert await s.recover(SEED.access_token, time.monotonic() + 5) in portal.current_access_tokens
    assert saved_refresh(file) in portal.standin.refresh_tokens
    assert (portal.refresh_count, portal.invalid_grants) == (1, 0)


async def test_a_caller_out_of_time_leaves_the_renewal_to_finish_and_save(
    portal: StandInPortal, tmp_path: Path
) -> None:
    file = tmp_path / "t.json"
    portal.after_rotation, portal.rotated_delay = "late", 0.3
    async with make_http(5.0) as http:
        s = session(portal, file, http)
        with pytest.raises(AuthError) as info:
            await s.recover(SEED.access_token, time.monotonic() + 0.1)
        message = str(info.value)
        assert "goes on" in message and "try again in a few seconds" in message
        assert "Could not reach" not in message
        await until_saved(portal, file)
        assert await s.access_token() in portal.current_access_tokens
    assert (portal.refresh_count, portal.invalid_grants) == (1, 0)


@pytest.mark.parametrize("fault", ["drop", "half"])
async def test_a_broken_answer_after_rotation_says_the_pair_may_be_rotated(
    portal: StandInPortal, tmp_path: Path, fault: str
) -> None:
    """The pair never arrived, so nothing can recover it: the message must not say "could not reach ... try
    again" as if nothing happened, but that Bitrix24 may have rotated, and what to do then."""
    portal.after_rotation = fault
    async with make_http(5.0) as http:
        s = session(portal, tmp_path / "t.json", http)
        with pytest.raises(AuthError) as info:
            await s.recover(SEED.access_token, time.monotonic() + 5)
    message = str(info.value)
    assert "may have rotated" in message and "re-authorise" in message and "B24_REFRESH_TOKEN" in message
    assert "Could not reach" not in message
    assert portal.refresh_count == 1


async def test_a_renewal_past_its_own_limit_says_the_pair_may_be_rotated(portal: StandInPortal, tmp_path: Path) -> None:
    portal.after_rotation, portal.rotated_delay = "late", 2.0
    async with make_http(5.0) as http:
        s = session(portal, tmp_path / "t.json", http, limit=0.3)
        with pytest.raises(AuthError) as info:
            await s.recover(SEED.access_token, time.monotonic() + 5)
    assert "may have rotated" in str(info.value) and "re-authorise" in str(info.value)


async def test_a_token_server_never_reached_says_try_again(tmp_path: Path) -> None:
    """Nothing was sent, nothing rotated: then, and only then, "try again" is the whole advice."""
    from tests.redis_server import free_port

    async with make_http(1.0) as http:
        s = OAuthSession(
            http=http,
            token_url=f"http://127.0.0.1:{free_port()}/oauth/token/",
            client_id=OAUTH_CLIENT_ID,
            client_secret=OAUTH_CLIENT_SECRET,
            seed=SEED,
            store=TokenFile(tmp_path / "t.json"),
        )
        with pytest.raises(AuthError) as info:
            await s.recover(SEED.access_token, time.monotonic() + 5)
    assert "Could not reach" in str(info.value) and "may have rotated" not in str(info.value)


async def test_shutdown_waits_for_the_renewal_under_way(
    portal: StandInPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the server's end (stdin closed) does: wait, bounded, for a renewal under way before closing."""
    caplog.set_level(logging.INFO)
    file = tmp_path / "t.json"
    portal.after_rotation, portal.rotated_delay = "late", 0.3
    async with make_http(5.0) as http:
        s = session(portal, file, http)
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.recover, SEED.access_token, time.monotonic() + 5)
            await rotated(portal)
            tg.cancel_scope.cancel()
        assert RENEWALS.busy
        await RENEWALS.settle(10)
    assert saved_refresh(file) in portal.standin.refresh_tokens
    assert "waiting for the OAuth token renewal" in caplog.text

"""What needs a real socket, in this process: the stand-in portal (tests/portal.py) on 127.0.0.1 over HTTP and
HTTPS with the test CA, and the real client or the whole server (through the SDK's in-memory MCP client).

TLS verification, hangs, trickling bodies, dropped connections, the portal's own leaky bucket and concurrency
only exist on a real connection; everything else about the client is shown with a mock transport (test_client).
The portal counts what it received, so retries and "nothing was sent" are facts. No timing is asserted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import trustme
from mcp import Client

from b24_mcp import settings as config
from b24_mcp.app import make_client
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.retry import RetryPolicy, jittered
from b24_mcp.errors import B24Error, PortalError, UpstreamError
from b24_mcp.server import build_server
from b24_mcp.tools.get_chat import read_chat
from tests.portal import Fault, StandInPortal
from tests.values import BOT_ID, CODE, TOKEN, at_once, webhook_vars

pytestmark = pytest.mark.anyio

CUT_OFF = "did not answer in time (B24_TIMEOUT=0.1 s a request, 0.3 s for the whole call)"


def settings_for(portal: StandInPortal, **env: str) -> config.Settings:
    return config.load(webhook_vars(portal.webhook_url, **env))


@asynccontextmanager
async def connected(portal: StandInPortal, retry: RetryPolicy | None = None, **env: str) -> AsyncIterator[B24Client]:
    """The client as the server makes it (make_http: SSL_CERT_FILE is read here), against `portal`."""
    settings = settings_for(portal, **env)
    async with make_http(settings.timeout) as http:
        yield make_client(settings, http, retry)


async def get_chats(b24: B24Client, n: int) -> list[Any]:
    """n concurrent get_chat calls; each outcome is the chat or the B24Error."""
    outcomes: list[Any] = [None] * n

    async def one(i: int) -> None:
        try:
            outcomes[i] = await read_chat(b24, "chat5")
        except B24Error as err:
            outcomes[i] = err

    with anyio.fail_after(30):  # a bound for the test, not a timing assertion
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return outcomes


@pytest.fixture(params=["http", "https"])
def portal(request: pytest.FixtureRequest) -> StandInPortal:
    return request.getfixturevalue(f"{request.param}_portal")  # type: ignore[no-any-return]


async def test_tools_over_a_real_socket(portal: StandInPortal) -> None:
    """The documented example, a thread with nulls and undocumented fields, and a personal chat, as a host sees them."""
    async with Client(build_server(settings_for(portal)), mode="legacy") as client:
        results = {d: await client.call_tool("get_chat", {"dialogId": d}) for d in ("chat5", "chat9", "1")}
    for dialog, result in results.items():
        assert not result.is_error, result.content
        assert result.structured_content is not None and result.structured_content.pop("notice")
        assert result.structured_content == portal.chats[dialog]
        assert CODE not in result.model_dump_json() and TOKEN not in result.model_dump_json()
    assert '"Support Chat" (chat5)' in results["chat5"].content[0].text  # type: ignore[union-attr]
    assert "personal chat" in results["1"].content[0].text  # type: ignore[union-attr]
    request = portal.requests[0]
    assert request.method == "POST" and request.path == f"/rest/1/{CODE}/imbot.v2.Chat.get"
    assert request.body == {"botId": BOT_ID, "botToken": TOKEN, "dialogId": "chat5"}
    assert portal.count() == 3


async def test_the_connection_is_warmed_after_tools_list_not_before(https_portal: StandInPortal) -> None:
    """Start-up opens nothing; once the host has the tool list, the portal connection is opened ahead of the
    first call (one HEAD of the home page, no REST request), so that call skips the TLS handshake."""
    async with Client(build_server(settings_for(https_portal)), mode="legacy") as client:
        assert https_portal.heads == 0
        await client.list_tools()
        with anyio.fail_after(10):  # a bound for the test, not a timing assertion
            while https_portal.heads == 0:  # noqa: ASYNC110 - the portal runs in threads: nothing to wait on
                await anyio.sleep(0.01)
        assert https_portal.requests == []
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert not result.is_error and https_portal.heads == 1


async def test_the_portals_own_refusals(https_portal: StandInPortal) -> None:
    async with connected(https_portal) as b24:
        with pytest.raises(PortalError, match=r"ACCESS_DENIED.*not a participant of chat7"):
            await read_chat(b24, "chat7")
        with pytest.raises(PortalError, match=r"BOT_NOT_FOUND.*no bot with id 999"):
            await read_chat(b24, "chat5", bot_id=999)
        with pytest.raises(PortalError, match="BOT_OWNERSHIP_ERROR") as info:
            await read_chat(b24, "chat5", bot_token="not-the-token")
    assert "not-the-token" not in str(info.value)


async def test_wrong_webhook_code(https_portal: StandInPortal, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="b24_mcp")  # raw records: before the stderr handler's redaction
    url = https_portal.webhook_url.replace(CODE, "wrongCODE9876")
    settings = config.load(webhook_vars(url))
    async with make_http(settings.timeout) as http:
        with pytest.raises(PortalError, match=r"NO_AUTH_FOUND.*B24_WEBHOOK_URL") as info:
            await read_chat(make_client(settings, http), "chat5")
    assert "wrongCODE9876" not in str(info.value)
    assert "imbot.v2.Chat.get" in caplog.text and "wrongCODE9876" not in caplog.text


@pytest.mark.parametrize("trust", ["nothing", "another CA"])
async def test_untrusted_certificate_points_at_ssl_cert_file(
    https_portal: StandInPortal, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, trust: str
) -> None:
    if trust == "nothing":
        monkeypatch.delenv("SSL_CERT_FILE")
        advice = "set SSL_CERT_FILE to that CA's PEM file"
    else:
        other = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        monkeypatch.setenv("SSL_CERT_FILE", str(other))
        advice = "SSL_CERT_FILE points to a CA that did not sign it"
    async with connected(https_portal) as b24:
        with pytest.raises(UpstreamError) as info:
            await read_chat(b24, "chat5")
    assert info.value.message.startswith("The TLS certificate of 127.0.0.1:") and advice in info.value.message
    assert https_portal.requests == []  # no request left this process: TLS failures are not retried either


async def test_unreadable_ssl_cert_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate")
    monkeypatch.setenv("SSL_CERT_FILE", str(bad))
    with pytest.raises(B24Error, match=r"SSL_CERT_FILE=.*could not be loaded as a CA bundle"):
        make_http(1.0)


@pytest.mark.parametrize(("drops", "succeeds"), [(2, True), (3, False)])
async def test_dropped_connections_are_retried_twice(https_portal: StandInPortal, drops: int, succeeds: bool) -> None:
    https_portal.script(*[Fault.drop()] * drops)
    async with connected(https_portal, RetryPolicy(at_once)) as b24:
        if succeeds:
            assert (await read_chat(b24, "chat5")).id == 5
        else:
            with pytest.raises(UpstreamError, match=r"127\.0\.0\.1:[0-9]+ broke off the answer"):
                await read_chat(b24, "chat5")
    assert https_portal.count() == 3


@pytest.mark.parametrize("fault", [Fault.hang(20), Fault.trickle(2.5)], ids=["hang", "trickle"])
async def test_slow_portal_is_cut_off_at_the_call_bound(https_portal: StandInPortal, fault: Fault) -> None:
    """A hang meets httpx's read timeout; a trickle never does (a piece every 0.05 s, within the 0.1 s a read
    may take, 2.5 s in all): only the call's own bound ends it, with its own message."""
    https_portal.script(fault, fault, fault)
    async with connected(https_portal, B24_TIMEOUT="0.1") as b24:
        with anyio.fail_after(10):  # a bound for the test; the client promises 3 x 0.1 s
            with pytest.raises(UpstreamError) as info:
                await read_chat(b24, "chat5")
    assert CUT_OFF in str(info.value)


async def test_burst_with_matching_settings_is_never_refused() -> None:
    """A portal like a standard plan (2/s, 50 at once) scaled to 5/s and 3 at once. The client keeps one request of
    headroom for arrival jitter, here 200 ms: at 10/s (100 ms) the jitter of a loaded 2-core machine, with the
    portal's threads in this process, exceeded it about once in ten runs. Four calls are enough to show the pacing:
    sent at once, the fourth would overflow the portal's three."""
    with StandInPortal(webhook_code=CODE, bot_token=TOKEN, rate=5, burst=3) as limited:
        async with connected(limited, B24_RATE_LIMIT="5", B24_RATE_BURST="3") as b24:
            outcomes = await get_chats(b24, 4)
    assert [o for o in outcomes if isinstance(o, B24Error)] == []
    assert limited.refusals == 0
    assert limited.count() == 4


async def test_burst_against_a_stricter_portal_still_answers_every_call() -> None:
    # The real back-off, jitter and all, 10x faster like the portal.
    faster = RetryPolicy(lambda attempt, base, cap: jittered(attempt, base / 10, cap / 10))
    # The client believes the portal allows 40/s and 30 at once; the portal allows 20/s and 3 (refusals are the
    # point here, so no headroom for jitter is needed).
    with StandInPortal(webhook_code=CODE, bot_token=TOKEN, rate=20, burst=3) as strict:
        async with connected(strict, faster, B24_RATE_LIMIT="40", B24_RATE_BURST="30") as b24:
            outcomes = await get_chats(b24, 6)
    assert [str(o) for o in outcomes if isinstance(o, B24Error)] == []
    assert strict.refusals > 0  # the portal did refuse some...
    assert strict.count() == 6 + strict.refusals  # ...and each refused request was sent again, no more


async def test_concurrent_tool_calls_run_in_parallel() -> None:
    with StandInPortal(webhook_code=CODE, bot_token=TOKEN, delay=0.2) as portal:
        async with Client(build_server(settings_for(portal, B24_RATE_BURST="30")), mode="legacy") as client:
            results: list[Any] = []

            async def one() -> None:
                results.append(await client.call_tool("get_chat", {"dialogId": "chat5"}))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(12):
                        tg.start_soon(one)
        assert len(results) == 12 and not any(r.is_error for r in results)
        assert portal.max_in_flight >= 6  # not serialised (serial calls show 1; a busy machine may stagger some)


async def test_plain_http_to_an_https_portal_says_to_use_https(https_portal: StandInPortal) -> None:
    """Allowed on loopback, http:// to a portal that speaks only TLS read as a dropped answer ("try again")."""
    settings = config.load(webhook_vars(https_portal.webhook_url.replace("https://", "http://", 1)))
    async with make_http(settings.timeout) as http:
        b24 = make_client(settings, http, RetryPolicy(at_once))
        with pytest.raises(UpstreamError) as info:
            await read_chat(b24, "chat5")
    message = str(info.value)
    assert "use https:// in B24_WEBHOOK_URL" in message and "try again" not in message and CODE not in message

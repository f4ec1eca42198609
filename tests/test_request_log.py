"""B24_LOG_LEVEL=DEBUG: one line per request to the portal, with what a person debugging a setup needs.

The method, the dialog or message id, the HTTP status, the Bitrix24 code (or "ok"), how long the request took,
and what happens next (a retry and its delay, or why not). Never a secret: the webhook code and the bot token
are in every request, and in no line. The back-off handed in is fixed, so the line is predictable.
"""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from b24_mcp import settings as config
from b24_mcp.app import make_client
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.retry import Backoff, RetryPolicy, jittered
from b24_mcp.errors import PortalError
from b24_mcp.tools.get_chat import read_chat
from b24_mcp.tools.get_messages import read_window
from tests.values import CHAT, CODE, TOKEN, at_once, webhook_vars

pytestmark = pytest.mark.anyio


def answers(*responses: httpx.Response) -> httpx.MockTransport:
    queue = list(responses)
    return httpx.MockTransport(lambda request: queue.pop(0) if len(queue) > 1 else queue[0])


def portal_error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": "said by the portal"})


def client(transport: httpx.MockTransport, backoff: Backoff = jittered) -> B24Client:
    settings = config.load(webhook_vars(B24_RATE_BURST="50", B24_RATE_LIMIT="20"))  # a retry's turn: 50 ms
    assert isinstance(settings.auth, config.WebhookConfig)
    return make_client(settings, make_http(settings.timeout, transport), RetryPolicy(backoff))


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "b24_mcp.client"]


async def test_one_line_per_request_with_status_code_duration_and_the_retry(caplog: pytest.LogCaptureFixture) -> None:
    b24 = client(
        answers(portal_error(503, "QUERY_LIMIT_EXCEEDED"), httpx.Response(200, json={"result": {"chat": CHAT}})),
        backoff=lambda attempt, base, cap: 0.01,
    )
    with caplog.at_level(logging.DEBUG, logger="b24_mcp.client"):
        await read_chat(b24, "chat5")
    first, second = lines(caplog)
    assert re.fullmatch(
        r"imbot\.v2\.Chat\.get dialogId=chat5 -> HTTP 503 QUERY_LIMIT_EXCEEDED in \d+ ms; retry 1 in 0\.0 s", first
    ), first
    # The portal's refusal filled our bucket too: the retry waited for its turn, and says so.
    assert re.fullmatch(
        r"imbot\.v2\.Chat\.get dialogId=chat5 -> HTTP 200 ok in \d+ ms after waiting [0-9.]+ s for B24_RATE_LIMIT",
        second,
    ), second
    assert not any(CODE in line or TOKEN in line for line in lines(caplog))


async def test_a_final_error_says_it_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    b24 = client(answers(portal_error(403, "ACCESS_DENIED")))
    with caplog.at_level(logging.DEBUG, logger="b24_mcp.client"), pytest.raises(PortalError):
        await read_window(b24, 789)
    (line,) = lines(caplog)
    assert re.fullmatch(
        r"imbot\.v2\.Chat\.Message\.getContext messageId=789 -> HTTP 403 ACCESS_DENIED in \d+ ms; not retried", line
    ), line


async def test_giving_up_is_said_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    b24 = client(answers(httpx.Response(502, text="<html>bad gateway</html>")), backoff=at_once)
    with caplog.at_level(logging.DEBUG, logger="b24_mcp.client"), pytest.raises(Exception, match="HTTP 502"):
        await b24.scopes()
    logged = lines(caplog)
    assert [line.rsplit("; ", 1)[1] for line in logged] == [
        "retry 1 in 0.0 s",
        "retry 2 in 0.0 s",
        "giving up after 3 tries",
    ]
    assert all(line.startswith("scope -> HTTP 502 UpstreamError in ") for line in logged)


async def test_nothing_is_formatted_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    b24 = client(answers(httpx.Response(200, json={"result": ["imbot"]})))
    with caplog.at_level(logging.INFO, logger="b24_mcp.client"):
        assert await b24.scopes() == ["imbot"]
    assert lines(caplog) == []

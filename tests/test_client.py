"""The Bitrix24 client against httpx.MockTransport: request shape, every error code, retries by code."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from b24_mcp import client as client_module
from b24_mcp import settings as config
from b24_mcp.client import B24Client, make_http
from b24_mcp.errors import HINTS, B24Error, InputError, PortalError, TransportError

CODE = "hookSECRETcode123"
TOKEN = "botSECRETtoken456"
HOOK = f"https://acme.bitrix24.com/rest/1/{CODE}/"
CHAT = {"id": 5, "dialogId": "chat5", "name": "Support Chat", "type": "chat", "role": "owner"}

pytestmark = pytest.mark.anyio


def settings(**env: str) -> config.Settings:
    base = {"B24_WEBHOOK_URL": HOOK, "B24_BOT_ID": "456", "B24_BOT_TOKEN": TOKEN, "B24_RATE_BURST": "50"}
    return config.load({**base, **env})


def ok(result: Any, reset_in: float | None = None) -> httpx.Response:
    body: dict[str, Any] = {"result": result, "time": {"start": 1.0, "finish": 1.1, "duration": 0.1}}
    if reset_in is not None:
        body["time"]["operating_reset_at"] = time.time() + reset_in
    return httpx.Response(200, json=body)


def err(status: int, code: str, description: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description})


class Portal:
    """Answers from a list (the last answer repeats) and records every request."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], Any]) -> None:
        self.answers = list(answers) or [ok({"chat": CHAT})]
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if callable(answer):
            answer = answer(request)
            if hasattr(answer, "__await__"):
                answer = await answer
        return answer


def make(portal: Portal, **env: str) -> B24Client:
    s = settings(**env)
    return B24Client(s, make_http(s, httpx.MockTransport(portal)))


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_backoff", lambda attempt, base, cap: 0.01)


async def test_request_shape_matches_the_docs() -> None:
    portal = Portal()
    chat = await make(portal).get_chat("chat5")
    assert chat.name == "Support Chat"
    (request,) = portal.requests
    assert request.method == "POST"
    assert str(request.url) == HOOK + "imbot.v2.Chat.get"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"botId": 456, "dialogId": "chat5", "botToken": TOKEN}


async def test_arguments_override_the_environment() -> None:
    portal = Portal()
    await make(portal).get_chat("12", bot_id=789, bot_token="other-token-1")
    assert json.loads(portal.requests[0].content) == {"botId": 789, "dialogId": "12", "botToken": "other-token-1"}


@pytest.mark.parametrize(("env", "missing"), [({"B24_BOT_ID": ""}, "botId"), ({"B24_BOT_TOKEN": ""}, "botToken")])
async def test_missing_bot_id_or_token_sends_nothing(env: dict[str, str], missing: str) -> None:
    portal = Portal()
    with pytest.raises(InputError) as info:
        await make(portal, **env).get_chat("chat5")
    assert str(info.value).startswith(f"{missing} is required")
    assert ("B24_BOT_ID" if missing == "botId" else "B24_BOT_TOKEN") in str(info.value)
    assert portal.requests == []


DOCUMENTED = [
    (400, "BOT_TOKEN_NOT_SPECIFIED", "Bot token is not specified", "B24_BOT_TOKEN"),
    (400, "BOT_ID_REQUIRED", "Bot ID is required", "B24_BOT_ID"),
    (400, "BOT_NOT_FOUND", "Bot not found", "no bot with id 456"),
    (403, "BOT_OWNERSHIP_ERROR", "Bot is registered by another application", "another application"),
    (403, "ACCESS_DENIED", "Access denied", "not a participant of chat5"),
    (500, "INTERNAL_SERVER_ERROR", "Internal server error", "try again later"),
    (500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response", "try again later"),
    (503, "OVERLOAD_LIMIT", "REST API is blocked due to overload", "only Bitrix24 support can lift"),
    (405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", "bug"),
    (400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", "bug"),
    (401, "NO_AUTH_FOUND", "Wrong authorization data", "B24_WEBHOOK_URL"),
    (400, "INVALID_REQUEST", "Https required", "https"),
    (403, "INVALID_CREDENTIALS", "Invalid request credentials", "rights"),
    (404, "ERROR_MANIFEST_IS_NOT_AVAILABLE", "Manifest is not available", "admin"),
    (403, "insufficient_scope", "The request requires higher privileges", "imbot"),
    (401, "expired_token", "The access token provided has expired", "re-authorise"),
    (403, "user_access_error", "The user does not have access to the application", "access"),
    (500, "PORTAL_DELETED", "Portal was deleted", "Temporary closure"),
]


@pytest.mark.parametrize(("status", "code", "description", "advice"), DOCUMENTED)
async def test_each_documented_code_is_final_and_explained(
    status: int, code: str, description: str, advice: str
) -> None:
    portal = Portal(err(status, code, description))
    with pytest.raises(PortalError) as info:
        await make(portal).get_chat("chat5")
    message = str(info.value)
    assert info.value.code == code and info.value.status == status
    assert message.startswith(f"Bitrix24 error {code} (HTTP {status} from acme.bitrix24.com): {description}.")
    assert advice in message
    assert len(portal.requests) == 1  # business and system errors are never retried
    assert CODE not in message and TOKEN not in message


def test_every_documented_code_has_a_hint() -> None:
    assert {code for _, code, _, _ in DOCUMENTED} <= set(HINTS)


async def test_undocumented_code_passes_through() -> None:
    portal = Portal(err(400, "SOMETHING_NEW", "A new   kind\nof error"))
    with pytest.raises(PortalError, match=r"^Bitrix24 error SOMETHING_NEW \(HTTP 400 .*\): A new kind of error\.$"):
        await make(portal).get_chat("chat5")


async def test_secret_echoed_by_portal_is_masked() -> None:
    portal = Portal(err(400, "WEIRD", f"token {TOKEN} for /rest/1/{CODE}/ rejected"))
    with pytest.raises(PortalError) as info:
        await make(portal).get_chat("chat5")
    assert TOKEN not in str(info.value) and CODE not in str(info.value)


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (httpx.Response(502, content=b"<html><body>Bad gateway</body></html>"), "HTTP 502 with an HTML page"),
        (httpx.Response(200, content=b'{"result": {"chat": {"id": 5'), "not JSON"),
        (httpx.Response(200, content=b""), "an empty body"),
        (httpx.Response(200, json={"foo": 1}), "JSON without a 'result' field"),
        (httpx.Response(200, json={"result": []}), "without result.chat"),
        (httpx.Response(404, content=b"Not found"), "HTTP 404"),
    ],
)
async def test_malformed_answers_name_the_host_and_status(response: httpx.Response, words: str) -> None:
    portal = Portal(response)
    with pytest.raises(TransportError) as info:
        await make(portal).get_chat("chat5")
    assert "acme.bitrix24.com" in str(info.value)
    assert words in str(info.value)
    assert CODE not in str(info.value)


async def test_chat_with_wrong_types_names_the_field() -> None:
    portal = Portal(ok({"chat": {"id": 5, "dialogId": "chat5", "name": None, "messageCount": "many"}}))
    with pytest.raises(TransportError) as info:
        await make(portal).get_chat("chat5")
    assert "chat.name" in str(info.value) and "chat.messageCount" in str(info.value)
    assert "many" not in str(info.value)


async def test_5xx_without_code_is_retried_twice(fast_backoff: None) -> None:
    portal = Portal(httpx.Response(502, content=b"<html>bad gateway</html>"))
    with pytest.raises(TransportError, match="HTTP 502"):
        await make(portal).get_chat("chat5")
    assert len(portal.requests) == 3


async def test_transient_failure_then_success(fast_backoff: None) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    portal = Portal(refuse, ok({"chat": CHAT}))
    assert (await make(portal).get_chat("chat5")).id == 5
    assert len(portal.requests) == 2


async def test_connection_errors_are_explained_after_two_retries(fast_backoff: None) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    portal = Portal(refuse)
    with pytest.raises(TransportError, match=r"Could not connect to Bitrix24 at acme.bitrix24.com \(\[Errno 111\]"):
        await make(portal).get_chat("chat5")
    assert len(portal.requests) == 3


async def test_tls_failure_points_at_ssl_cert_file() -> None:
    def untrusted(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", request=request)

    with pytest.raises(TransportError, match="SSL_CERT_FILE"):
        await make(Portal(untrusted)).get_chat("chat5")


async def test_query_limit_is_retried_until_it_passes(fast_backoff: None) -> None:
    limit = err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    portal = Portal(limit, limit, limit, ok({"chat": CHAT}))
    assert (await make(portal, B24_RATE_LIMIT="1000").get_chat("chat5")).id == 5
    assert len(portal.requests) == 4


@pytest.mark.parametrize("status", [429, 503])
async def test_bare_429_or_503_counts_as_a_rate_limit(fast_backoff: None, status: int) -> None:
    portal = Portal(httpx.Response(status, content=b"Too many requests"), ok({"chat": CHAT}))
    assert (await make(portal).get_chat("chat5")).id == 5
    assert len(portal.requests) == 2


async def test_query_limit_gives_up_after_bounded_tries(fast_backoff: None) -> None:
    portal = Portal(err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    with pytest.raises(PortalError, match=r"QUERY_LIMIT_EXCEEDED.*gave up after 8 tries"):
        await make(portal, B24_RATE_LIMIT="1000").get_chat("chat5")
    assert len(portal.requests) == client_module.LIMIT_ATTEMPTS


async def test_query_limit_backoff_respects_the_call_deadline() -> None:
    """With the real back-off and a 0.2 s budget per request, the call ends within 3 x 0.2 s."""
    portal = Portal(err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    with anyio.fail_after(5):  # a bound for the test, not a timing assertion
        with pytest.raises(PortalError, match="QUERY_LIMIT_EXCEEDED"):
            await make(portal, B24_TIMEOUT="0.2").get_chat("chat5")
    assert 1 <= len(portal.requests) < client_module.LIMIT_ATTEMPTS


async def test_overload_limit_is_never_retried() -> None:
    portal = Portal(err(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload"))
    with pytest.raises(PortalError, match="contact support"):
        await make(portal).get_chat("chat5")
    assert len(portal.requests) == 1


async def test_operation_time_limit_waits_for_a_known_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    portal = Portal(
        ok({"chat": CHAT}, reset_in=0.05), err(429, "OPERATION_TIME_LIMIT", "Method is blocked"), ok({"chat": CHAT})
    )
    b24 = make(portal)
    await b24.get_chat("chat5")
    assert (await b24.get_chat("chat5")).id == 5
    assert len(portal.requests) == 3


async def test_operation_time_limit_far_away_says_when() -> None:
    portal = Portal(ok({"chat": CHAT}, reset_in=300), err(429, "OPERATION_TIME_LIMIT", "Method is blocked"))
    b24 = make(portal)
    await b24.get_chat("chat5")
    with pytest.raises(PortalError, match=r"imbot.v2.Chat.get is available again in (299|300) s"):
        await b24.get_chat("chat5")
    assert len(portal.requests) == 2


async def test_operation_time_limit_without_a_known_reset() -> None:
    portal = Portal(err(429, "OPERATION_TIME_LIMIT", "Method is blocked"))
    with pytest.raises(PortalError, match="available again in a few minutes"):
        await make(portal).get_chat("chat5")
    assert len(portal.requests) == 1


async def test_hanging_portal_ends_within_the_call_bound() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return ok({"chat": CHAT})

    portal = Portal(hang)
    with anyio.fail_after(5):
        with pytest.raises(
            TransportError, match=r"did not answer in time \(B24_TIMEOUT=0\.2 s a request, 0\.6 s for the whole call\)"
        ):
            await make(portal, B24_TIMEOUT="0.2").get_chat("chat5")
    assert 1 <= len(portal.requests) <= 3


async def test_concurrent_calls_are_not_serialised() -> None:
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.2)
        in_flight -= 1
        return ok({"chat": CHAT})

    b24 = make(Portal(slow), B24_RATE_BURST="20")
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(b24.get_chat, "chat5")
    assert peak == 10


async def test_waits_are_reported() -> None:
    seen: list[tuple[float, str]] = []

    async def on_wait(seconds: float, why: str) -> None:
        seen.append((seconds, why))

    b24 = make(Portal(), B24_RATE_BURST="1", B24_RATE_LIMIT="20")
    await b24.get_chat("chat5", on_wait=on_wait)
    await b24.get_chat("chat5", on_wait=on_wait)
    assert len(seen) == 1 and "B24_RATE_LIMIT" in seen[0][1] and 0 < seen[0][0] <= 0.05


async def test_no_error_ever_contains_a_secret(fast_backoff: None) -> None:
    answers: list[httpx.Response] = [err(s, c, d) for s, c, d, _ in DOCUMENTED]
    answers += [httpx.Response(502, content=b"<html/>"), httpx.Response(200, content=b"{")]
    for answer in answers:
        with pytest.raises(B24Error) as info:
            await make(Portal(answer)).get_chat("chat5")
        assert CODE not in str(info.value) and TOKEN not in str(info.value)

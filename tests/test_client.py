"""The Bitrix24 client's rules against httpx.MockTransport: request shapes, every documented error code and its
hint, malformed answers, the retry rule of each kind of failure, and the per-call deadline.

The mock portal records every request, so "nothing was sent" and "retried twice" are counted, not assumed.
Retries go at once (`make_at_once`) where the rule under test is the count of tries, not the wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import anyio
import httpx
import pytest

from b24_mcp import settings as config
from b24_mcp.app import make_client, mask_secrets
from b24_mcp.bitrix24.auth import OAuth
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.oauth import OAuthSession
from b24_mcp.bitrix24.retry import Backoff, RetryPolicy, jittered
from b24_mcp.errors import HINTS, POLICIES, AnswerError, B24Error, InputError, PortalError, UpstreamError
from b24_mcp.tools.get_chat import read_chat
from b24_mcp.tools.get_chat_members import read_members
from b24_mcp.tools.get_message import read_message
from b24_mcp.tools.get_messages import read_window
from tests.values import BOT_ID, CHAT, CODE, HOOK, HOST, TOKEN, at_once, webhook_vars

pytestmark = pytest.mark.anyio

LIMIT_TRIES = POLICIES["rate_limit"].tries + 1  # the first try and the rate limit's retries
TRANSIENT_TRIES = POLICIES["transient"].tries + 1


def ok(result: Any, reset_in: float | None = None) -> httpx.Response:
    body: dict[str, Any] = {"result": result, "time": {"start": 1.0, "finish": 1.1, "duration": 0.1}}
    if reset_in is not None:
        body["time"]["operating_reset_at"] = time.time() + reset_in
    return httpx.Response(200, json=body)


def err(status: int, code: str, description: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description})


Answer = httpx.Response | Callable[[httpx.Request], Any]


class Portal:
    """Answers from a list (the last answer repeats) and records every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers: list[Answer] = list(answers) or [ok({"chat": CHAT})]
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if callable(answer):
            answer = answer(request)
            if hasattr(answer, "__await__"):
                answer = await answer
        return cast(httpx.Response, answer)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def make(portal: Portal, **env: str) -> B24Client:
    """A webhook client of `portal`, with the real back-off."""
    return _make(portal, jittered, env)


def make_at_once(portal: Portal, **env: str) -> B24Client:
    """The same, retrying at once: where the rule under test is the count of tries, not the wait."""
    return _make(portal, at_once, env)


def _make(portal: Portal, backoff: Backoff, env: dict[str, str]) -> B24Client:
    settings = config.load(webhook_vars(**{"B24_RATE_BURST": "50", **env}))
    assert isinstance(settings.auth, config.WebhookConfig)
    return make_client(settings, make_http(settings.timeout, httpx.MockTransport(portal)), RetryPolicy(backoff))


# --- request shapes ---------------------------------------------------------------------------------------------

BOT = {"botId": BOT_ID, "botToken": TOKEN}
USER = {"id": 1, "name": "Anna Petrova"}
MESSAGE = {"id": 789, "chatId": 5, "authorId": 1, "text": "hello"}


@pytest.mark.parametrize(
    ("call", "method", "body", "answer"),
    [
        (lambda c: read_chat(c, "chat5"), "imbot.v2.Chat.get", {**BOT, "dialogId": "chat5"}, {"chat": CHAT}),
        (lambda c: read_members(c, "chat5"), "imbot.v2.Chat.User.list", {**BOT, "dialogId": "chat5"}, [USER]),
        (
            lambda c: read_members(c, "12", order={"id": "DESC"}, limit=10),
            "imbot.v2.Chat.User.list",
            {**BOT, "dialogId": "12", "order": {"id": "DESC"}, "limit": 10},
            [USER],
        ),
        (
            lambda c: read_window(c, 789, range_=5),
            "imbot.v2.Chat.Message.getContext",
            {**BOT, "messageId": 789, "range": 5},
            {"messages": [MESSAGE], "users": [USER], "hasPrevPage": False, "hasNextPage": False},
        ),
        (
            lambda c: read_message(c, 789),
            "imbot.v2.Chat.Message.get",
            {**BOT, "messageId": 789},
            {"message": MESSAGE, "user": USER},
        ),
        (lambda c: c.get_bot(), "imbot.v2.Bot.get", BOT, {"bot": {"id": BOT_ID, "type": "personal"}}),
        (lambda c: c.scopes(), "scope", {}, ["imbot", "im"]),
    ],
)
async def test_request_shape_of_each_method(call: Any, method: str, body: dict[str, Any], answer: Any) -> None:
    portal = Portal(ok(answer))
    assert await call(make(portal)) is not None
    (request,) = portal.requests
    assert request.method == "POST"
    assert str(request.url) == HOOK + method
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == body


async def test_the_answer_is_validated_into_the_model() -> None:
    chat = await read_chat(make(Portal()), "chat5")
    assert chat.name == "Support Chat" and chat.model_dump(exclude_unset=True) == CHAT


async def test_arguments_override_the_environment() -> None:
    portal = Portal()
    await read_chat(make(portal), "12", bot_id=789, bot_token="other-token-1")
    assert portal.bodies() == [{"botId": 789, "dialogId": "12", "botToken": "other-token-1"}]


@pytest.mark.parametrize(("env", "missing"), [({"B24_BOT_ID": ""}, "botId"), ({"B24_BOT_TOKEN": ""}, "botToken")])
async def test_missing_bot_id_or_token_sends_nothing(env: dict[str, str], missing: str) -> None:
    portal = Portal()
    with pytest.raises(InputError) as info:
        await read_chat(make(portal, **env), "chat5")
    assert str(info.value).startswith(f"{missing} is required")
    assert ("B24_BOT_ID" if missing == "botId" else "B24_BOT_TOKEN") in str(info.value)
    assert portal.requests == []


# --- OAuth: signing with auth=, and one recovery of a rejected token ----------------------------------------------


class FakeSession:
    """Stands in for OAuthSession: hands out a token, and a new one after each `recover`."""

    def __init__(self) -> None:
        self.token = "accessTOKEN-1"
        self.recovered: list[str] = []

    async def access_token(self) -> str:
        return self.token

    async def recover(self, rejected: str, deadline: float) -> None:
        self.recovered.append(rejected)
        self.token = f"accessTOKEN-{len(self.recovered) + 1}"


def make_oauth(portal: Portal) -> tuple[B24Client, FakeSession]:
    env = {
        "B24_PORTAL_URL": f"https://{HOST}",
        "B24_ACCESS_TOKEN": "accessTOKEN-1",
        "B24_REFRESH_TOKEN": "refreshTOKEN-1",
        "B24_CLIENT_ID": "local.app",
        "B24_CLIENT_SECRET": "clientSECRET",
        "B24_BOT_ID": str(BOT_ID),
    }
    settings = config.load(env)
    assert isinstance(settings.auth, config.OAuthConfig)
    session = FakeSession()
    auth = OAuth(settings.auth, cast(OAuthSession, session))
    mask_secrets(settings)
    return B24Client(settings, make_http(settings.timeout, httpx.MockTransport(portal)), auth), session


async def test_oauth_signs_with_auth_and_sends_no_bot_token() -> None:
    portal = Portal()
    b24, _ = make_oauth(portal)
    await read_chat(b24, "chat5")
    (request,) = portal.requests
    assert str(request.url) == f"https://{HOST}/rest/imbot.v2.Chat.get"
    assert json.loads(request.content) == {"botId": BOT_ID, "dialogId": "chat5", "auth": "accessTOKEN-1"}


@pytest.mark.parametrize("code", ["expired_token", "invalid_token", "NO_AUTH_FOUND"])
async def test_oauth_rejected_token_is_recovered_once(code: str) -> None:
    portal = Portal(err(401, code, "The access token provided has expired."), ok({"chat": CHAT}))
    b24, session = make_oauth(portal)
    assert (await read_chat(b24, "chat5")).id == 5
    assert session.recovered == ["accessTOKEN-1"]
    assert [body["auth"] for body in portal.bodies()] == ["accessTOKEN-1", "accessTOKEN-2"]


async def test_oauth_token_rejected_again_after_recovery_names_the_oauth_settings() -> None:
    portal = Portal(err(401, "NO_AUTH_FOUND", "Wrong authorization data"))
    b24, session = make_oauth(portal)
    with pytest.raises(PortalError) as info:
        await read_chat(b24, "chat5")
    assert len(portal.requests) == 2 and len(session.recovered) == 1
    assert "B24_REFRESH_TOKEN" in str(info.value) and "B24_WEBHOOK_URL" not in str(info.value)


# --- every documented error code: final, explained, secret-free ----------------------------------------------------

DOCUMENTED = [
    (400, "BOT_TOKEN_NOT_SPECIFIED", "Bot token is not specified", "B24_BOT_TOKEN"),
    (400, "BOT_ID_REQUIRED", "Bot ID is required", "B24_BOT_ID"),
    (400, "BOT_NOT_FOUND", "Bot not found", f"no bot with id {BOT_ID}"),
    (403, "BOT_OWNERSHIP_ERROR", "Bot is registered by another application", "another application"),
    (403, "BOT_TYPE_NOT_ALLOWED", "Bot type is not allowed", "personal"),
    (403, "ACCESS_DENIED", "Access denied", "not a participant of chat5"),
    (404, "MESSAGE_NOT_FOUND", "Message not found", "There is no message ?"),
    (403, "MESSAGE_ACCESS_DENIED", "Access denied", "Add the bot to the chat"),
    (400, "FILE_NOT_FOUND", "File not found", "There is no file ?"),
    (403, "FILE_ACCESS_ERROR", "File access error", "not a participant of the chat the file was shared in"),
    (500, "INTERNAL_SERVER_ERROR", "Internal server error", "try again later"),
    (500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response", "try again later"),
    (503, "OVERLOAD_LIMIT", "REST API is blocked due to overload", "only Bitrix24 support can lift"),
    (405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", "bug"),
    (400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", "bug"),
    (404, "ERROR_METHOD_NOT_FOUND", "Method not found", "does not know imbot.v2.Chat.get"),
    (401, "NO_AUTH_FOUND", "Wrong authorization data", "B24_WEBHOOK_URL"),
    (400, "INVALID_REQUEST", "Https required", "https"),
    (403, "INVALID_CREDENTIALS", "Invalid request credentials", "rights"),
    (404, "ERROR_MANIFEST_IS_NOT_AVAILABLE", "Manifest is not available", "admin"),
    (403, "insufficient_scope", "The request requires higher privileges", "imbot"),
    (401, "expired_token", "The access token provided has expired", "uses no OAuth token"),
    (401, "invalid_token", "The access token provided is invalid", "uses no OAuth token"),
    (403, "user_access_error", "The user does not have access to the application", "access"),
    (500, "PORTAL_DELETED", "Portal was deleted", "Temporary closure"),
]


@pytest.mark.parametrize(("status", "code", "description", "advice"), DOCUMENTED)
async def test_each_documented_code_is_final_and_explained(
    status: int, code: str, description: str, advice: str
) -> None:
    portal = Portal(err(status, code, description))
    with pytest.raises(PortalError) as info:
        await read_chat(make(portal), "chat5")
    message = str(info.value)
    assert info.value.code == code and info.value.status == status
    assert message.startswith(f"Bitrix24 error {code} (HTTP {status} from {HOST}): {description}.")
    assert advice in message
    assert len(portal.requests) == 1  # business and system errors are never retried
    assert CODE not in message and TOKEN not in message


def test_every_documented_code_has_a_hint() -> None:
    documented = {code for _, code, _, _ in DOCUMENTED}
    assert documented <= set(HINTS)
    # retried (tested below), and a code whose meaning its HTTP status changes
    assert set(HINTS) - documented == {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INVALID_CREDENTIALS 401"}


@pytest.mark.parametrize(
    ("status", "advice", "not_said"),
    [(401, "webhook code in B24_WEBHOOK_URL is wrong", "lacks the rights"), (403, "lacks the rights", "code in B24")],
)
async def test_invalid_credentials_advice_follows_the_http_status(status: int, advice: str, not_said: str) -> None:
    portal = Portal(err(status, "INVALID_CREDENTIALS", "Invalid request credentials"))
    with pytest.raises(PortalError) as info:
        await read_chat(make(portal), "chat5")
    assert advice in str(info.value) and not_said not in str(info.value)


@pytest.mark.parametrize(
    "error", [{"code": "ACCESS_DENIED", "message": "Access denied"}, {"code": "ACCESS_DENIED", "description": "x"}]
)
async def test_an_error_sent_as_an_object_keeps_its_code(error: dict[str, str]) -> None:
    portal = Portal(httpx.Response(403, json={"error": error}))
    with pytest.raises(PortalError) as info:
        await read_chat(make(portal), "chat5")
    assert info.value.code == "ACCESS_DENIED" and "not a participant of chat5" in str(info.value)


@pytest.mark.parametrize("code", ["", "0"])
async def test_an_error_with_a_message_but_no_code_says_the_message(code: str) -> None:
    portal = Portal(err(400, code, f"User is not found or is not active ({TOKEN})"))
    with pytest.raises(AnswerError) as info:
        await read_chat(make(portal), "chat5")
    assert "has no code: User is not found or is not active (***)" in str(info.value) and len(portal.requests) == 1


async def test_a_refused_personal_chat_says_how_group_chats_are_named() -> None:
    portal = Portal(err(403, "ACCESS_DENIED", "Access denied"))
    with pytest.raises(PortalError) as info:
        await read_chat(make(portal), "5")
    assert '"5" names the personal chat with user 5' in str(info.value) and 'dialogId "chat5"' in str(info.value)
    with pytest.raises(PortalError) as info:
        await read_chat(make(portal), "chat5")
    assert "personal chat" not in str(info.value)


async def test_hints_name_the_ids_of_the_call() -> None:
    portal = Portal(err(400, "BOT_NOT_FOUND", "Bot not found"), err(404, "MESSAGE_NOT_FOUND", "Message not found"))
    b24 = make(portal)
    with pytest.raises(PortalError, match="no bot with id 999"):
        await read_chat(b24, "chat5", bot_id=999)
    with pytest.raises(PortalError, match="There is no message 789"):
        await read_message(b24, 789)


async def test_undocumented_code_passes_through() -> None:
    portal = Portal(err(400, "SOMETHING_NEW", "A new   kind\nof error"))
    with pytest.raises(PortalError, match=r"^Bitrix24 error SOMETHING_NEW \(HTTP 400 .*\): A new kind of error\.$"):
        await read_chat(make(portal), "chat5")


async def test_secret_echoed_by_portal_is_masked() -> None:
    portal = Portal(err(400, "WEIRD", f"token {TOKEN} for /rest/1/{CODE}/ rejected; caller's other-token-1"))
    with pytest.raises(PortalError) as info:
        await read_chat(make(portal), "chat5", bot_token="other-token-1")
    assert TOKEN not in str(info.value) and CODE not in str(info.value)
    assert "other-token-1" not in str(info.value)  # the caller's own botToken, masked in this call's error


# --- malformed answers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "kind", "words"),
    [
        (httpx.Response(502, content=b"<html><body>Bad gateway</body></html>"), UpstreamError, "HTTP 502 with an HTML"),
        (httpx.Response(200, content=b'{"result": {"chat": {"id": 5'), AnswerError, "not JSON"),
        (httpx.Response(200, content=b""), AnswerError, "an empty body"),
        (httpx.Response(200, json={"foo": 1}), AnswerError, "JSON without a 'result' field"),
        (httpx.Response(200, json={"result": []}), AnswerError, "without what b24-mcp needs to show it (result:"),
        (httpx.Response(404, content=b"Not found"), UpstreamError, "HTTP 404"),
        (httpx.Response(500, json={"weird": 1}), UpstreamError, "HTTP 500 with JSON that is not a Bitrix24 error"),
        (httpx.Response(400, json={"error": ["x"]}), AnswerError, "error whose code is not readable"),
        (
            httpx.Response(200, content=b'{"result": {"chat": {"id": 5, "dialogId": "chat5"}}, "x": NaN}'),
            AnswerError,
            "NaN or Infinity",
        ),
        (
            httpx.Response(302, headers={"location": "https://elsewhere.example/rest/"}),
            UpstreamError,
            "redirect to https://elsewhere.example, which b24-mcp does not follow",
        ),
    ],
)
async def test_malformed_answers_name_the_host_and_status(
    response: httpx.Response, kind: type[B24Error], words: str
) -> None:
    with pytest.raises(kind) as info:
        await read_chat(make_at_once(Portal(response)), "chat5")
    assert HOST in str(info.value)
    assert words in str(info.value)
    assert CODE not in str(info.value)


async def test_values_unlike_the_docs_are_set_aside_and_reported() -> None:
    portal = Portal(ok({"chat": {"id": 5, "dialogId": "chat5", "name": None, "messageCount": "many", "owner": 1}}))
    chat = await read_chat(make(portal), "chat5")
    assert chat.model_dump(exclude_unset=True, exclude={"notAsDocumented"}) == {
        "id": 5,
        "dialogId": "chat5",
        "owner": 1,
    }
    assert [m.model_dump() for m in chat.notAsDocumented] == [
        {"method": "imbot.v2.Chat.get", "path": "result.chat.messageCount", "expected": "integer", "value": "many"},
        {"method": "imbot.v2.Chat.get", "path": "result.chat.name", "expected": "string", "value": None},
    ]


async def test_a_chat_without_a_usable_id_is_an_error_naming_the_field() -> None:
    portal = Portal(ok({"chat": {"id": "5", "dialogId": "chat5", "name": "x"}}))
    with pytest.raises(AnswerError) as info:
        await read_chat(make(portal), "chat5")
    assert "chat.id" in str(info.value) and "report it" in str(info.value)


# --- retry by kind of failure ----------------------------------------------------------------------------------------


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(502, content=b"<html>bad gateway</html>"), httpx.Response(500, json={"weird": 1}), refuse],
)
async def test_transient_failures_are_retried_twice(failure: Answer) -> None:
    portal = Portal(failure)
    with pytest.raises(UpstreamError):
        await read_chat(make_at_once(portal), "chat5")
    assert len(portal.requests) == TRANSIENT_TRIES == 3


async def test_transient_failure_then_success() -> None:
    portal = Portal(refuse, ok({"chat": CHAT}))
    assert (await read_chat(make_at_once(portal), "chat5")).id == 5
    assert len(portal.requests) == 2


async def test_connection_errors_are_explained() -> None:
    with pytest.raises(UpstreamError, match=rf"^Could not connect to {HOST} \(\[Errno 111\] .*check the address"):
        await read_chat(make_at_once(Portal(refuse)), "chat5")


async def test_query_limit_is_retried_until_it_passes() -> None:
    limit = err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    portal = Portal(limit, limit, limit, ok({"chat": CHAT}))
    assert (await read_chat(make_at_once(portal, B24_RATE_LIMIT="1000"), "chat5")).id == 5
    assert len(portal.requests) == 4


@pytest.mark.parametrize(
    "refusal", [httpx.Response(429, content=b"Too many requests"), httpx.Response(503, content=b"<html>busy</html>")]
)
async def test_bare_429_or_503_counts_as_a_rate_limit(refusal: httpx.Response) -> None:
    portal = Portal(refusal, refusal, ok({"chat": CHAT}))
    assert (await read_chat(make_at_once(portal, B24_RATE_LIMIT="1000"), "chat5")).id == 5
    assert len(portal.requests) == 3  # more than the two retries a transient failure gets would be wrong too


async def test_query_limit_gives_up_after_bounded_tries() -> None:
    portal = Portal(err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    with pytest.raises(PortalError, match=rf"QUERY_LIMIT_EXCEEDED.*gave up after {LIMIT_TRIES} tries"):
        await read_chat(make_at_once(portal, B24_RATE_LIMIT="1000"), "chat5")
    assert len(portal.requests) == LIMIT_TRIES == 8


async def test_query_limit_backoff_respects_the_call_deadline() -> None:
    """With the real back-off and a 0.1 s budget per request, the call ends within 3 x 0.1 s.

    The rate limit is high so that pacing after the refusal never pushes the next slot past the deadline:
    that case has its own test (below), which shows a bug."""
    portal = Portal(err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    with anyio.fail_after(5):  # a bound for the test, not a timing assertion
        with pytest.raises(PortalError, match="QUERY_LIMIT_EXCEEDED"):
            await read_chat(make(portal, B24_TIMEOUT="0.1", B24_RATE_LIMIT="1000"), "chat5")
    assert 1 <= len(portal.requests) < LIMIT_TRIES


async def test_a_retry_that_runs_out_of_time_reports_the_portals_refusal() -> None:
    # Each refusal saturates the bucket, so each retry waits one slot (0.05 s at 20/s); the call may take 0.3 s,
    # fewer than the 8 tries fit, and the slot after the last one is past the deadline.
    portal = Portal(err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
    with anyio.fail_after(5):
        with pytest.raises(B24Error) as info:
            await read_chat(make_at_once(portal, B24_TIMEOUT="0.1", B24_RATE_LIMIT="20"), "chat5")
    assert 1 < len(portal.requests) < LIMIT_TRIES
    assert isinstance(info.value, PortalError) and info.value.code == "QUERY_LIMIT_EXCEEDED", str(info.value)


async def test_operation_time_limit_waits_for_a_known_reset() -> None:
    portal = Portal(
        ok({"chat": CHAT}, reset_in=0.05), err(429, "OPERATION_TIME_LIMIT", "Method is blocked"), ok({"chat": CHAT})
    )
    b24 = make(portal)
    await read_chat(b24, "chat5")  # learns when the method's budget resets
    assert (await read_chat(b24, "chat5")).id == 5
    assert len(portal.requests) == 3


async def test_operation_time_limit_far_away_says_when() -> None:
    portal = Portal(ok({"chat": CHAT}, reset_in=300), err(429, "OPERATION_TIME_LIMIT", "Method is blocked"))
    b24 = make(portal)
    await read_chat(b24, "chat5")
    with pytest.raises(PortalError, match=r"imbot.v2.Chat.get is available again in (299|300) s"):
        await read_chat(b24, "chat5")
    assert len(portal.requests) == 2


async def test_operation_time_limit_without_a_known_reset() -> None:
    portal = Portal(err(429, "OPERATION_TIME_LIMIT", "Method is blocked"))
    with pytest.raises(PortalError, match="available again in a few minutes"):
        await read_chat(make(portal), "chat5")
    assert len(portal.requests) == 1


async def test_a_call_that_would_wait_too_long_for_its_turn_takes_no_slot() -> None:
    portal = Portal()
    b24 = make(portal, B24_RATE_LIMIT="0.5", B24_RATE_BURST="2", B24_TIMEOUT="0.5")
    await read_chat(b24, "chat5")  # the one slot; the next is 2 s away, beyond the 1.5 s the call may take
    with pytest.raises(UpstreamError, match=r"would wait longer .* \(B24_RATE_LIMIT=0\.5/s\)"):
        await read_chat(b24, "chat5")
    assert len(portal.requests) == 1


async def test_no_error_ever_contains_a_secret() -> None:
    answers: list[httpx.Response] = [err(s, c, f"{d} {CODE} {TOKEN}") for s, c, d, _ in DOCUMENTED]
    answers += [httpx.Response(502, content=f"<html>{HOOK}</html>".encode()), httpx.Response(200, content=b"{")]
    for answer in answers:
        with pytest.raises(B24Error) as info:
            await read_chat(make_at_once(Portal(answer)), "chat5")
        assert CODE not in str(info.value) and TOKEN not in str(info.value)


async def test_a_rate_limit_wait_that_uses_up_the_deadline_says_so() -> None:
    """The second call waits most of its 3 x B24_TIMEOUT (0.56 of 0.6 s) for its turn, and the portal cannot answer
    in what is left: the message names the wait and B24_RATE_LIMIT, not the portal as too slow."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.1)
        return ok({"chat": CHAT})

    b24 = make(Portal(ok({"chat": CHAT}), slow), B24_TIMEOUT="0.2", B24_RATE_LIMIT="1.8", B24_RATE_BURST="1")
    results: list[BaseException | None] = []

    async def one() -> None:
        try:
            await read_chat(b24, "chat5")
            results.append(None)
        except UpstreamError as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    (failure,) = [r for r in results if r is not None]
    assert "waited" in str(failure) and "B24_RATE_LIMIT=1.8/s" in str(failure)
    assert "did not answer in time" not in str(failure)

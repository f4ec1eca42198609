"""The Bitrix24 REST client: builds each request for the auth mode in use, sends it, reads the answer.

It knows Bitrix24 and nothing of MCP. Every outcome is either the method's `result` or a `B24Error` whose text
is safe to show: Bitrix24's error codes become `PortalError`s with what to do next, and everything else that
can go wrong between here and the portal (refused connections, TLS, timeouts, an HTML page from a proxy, a
truncated body) becomes a `TransportError` naming the portal's host and the HTTP status, never the URL, whose
path holds the webhook code. One `httpx.AsyncClient` serves the whole process, for keep-alive.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import ValidationError

from .errors import B24Error, InputError, PortalError, TransportError, portal_error
from .logs import redact
from .models import Chat
from .pacing import LeakyBucket
from .settings import CALL_BUDGET, OAuthConfig, Settings, WebhookAuth

if TYPE_CHECKING:
    from .oauth import OAuthSession

log = logging.getLogger("b24_mcp.client")

GET_CHAT = "imbot.v2.Chat.get"
EXPIRED_CODES = frozenset({"expired_token", "invalid_token"})
LIMIT_ATTEMPTS = 8  # tries for a call the portal refused for its rate limit (bounded by the deadline too)
TRANSPORT_RETRIES = 2  # extra tries after connection errors, timeouts and 5xx pages without a code

OnWait = Callable[[float, str], Awaitable[None]]
"""Told (seconds, why) before each wait, so the tool layer can report progress."""


def make_http(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The process's one HTTP client. trust_env stays on so SSL_CERT_FILE (an on-premise CA) is honoured."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout),
        transport=transport,
        headers={"Accept": "application/json", "User-Agent": "b24-mcp"},
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
    )


class B24Client:
    """Calls REST methods on one portal; `get_chat` is imbot.v2.Chat.get with its arguments resolved."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, oauth: OAuthSession | None = None) -> None:
        self.settings = settings
        self._http = http
        self._oauth = oauth
        self._bucket = LeakyBucket(settings.rate_limit, settings.rate_burst)
        self._reset_at: dict[str, float] = {}  # method -> unix time its time budget resets
        redact.add(settings.secrets)

    @property
    def host(self) -> str:
        return self.settings.host

    async def get_chat(
        self, dialog_id: str, bot_id: int | None = None, bot_token: str | None = None, on_wait: OnWait | None = None
    ) -> Chat:
        """imbot.v2.Chat.get. botId/botToken fall back to B24_BOT_ID/B24_BOT_TOKEN; checked before sending."""
        bot_id = bot_id if bot_id is not None else self.settings.bot_id
        if bot_id is None:
            raise InputError(
                "botId is required: pass botId (the bot's id, e.g. 456) or set B24_BOT_ID in the server's environment."
            )
        params: dict[str, Any] = {"botId": bot_id, "dialogId": dialog_id}
        if self.settings.mode == "webhook":
            bot_token = bot_token if bot_token is not None else self.settings.bot_token
            if bot_token is None:
                raise InputError(
                    "botToken is required with webhook authorisation: pass botToken (the token chosen when the bot "
                    "was registered) or set B24_BOT_TOKEN in the server's environment."
                )
            redact.add([bot_token])
            params["botToken"] = bot_token
        result = await self.call(GET_CHAT, params, on_wait)
        chat = result.get("chat") if isinstance(result, dict) else None
        if not isinstance(chat, dict):
            raise TransportError(f"Bitrix24 at {self.host} answered {GET_CHAT} without result.chat; nothing to show.")
        try:
            return Chat.model_validate(chat)
        except ValidationError as err:
            # Name the fields and the documented types; never echo values (they are the portal's data).
            problems = "; ".join(f"chat.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
            raise TransportError(
                f"Bitrix24 at {self.host} sent a chat that does not match the documented Chat object ({problems}). "
                "This b24-mcp version does not understand it; please report it."
            ) from None

    async def call(self, method: str, params: dict[str, Any], on_wait: OnWait | None = None) -> Any:
        """One REST call, bounded by CALL_BUDGET x B24_TIMEOUT; an expired OAuth token is renewed once."""
        deadline = time.monotonic() + CALL_BUDGET * self.settings.timeout
        auth = self.settings.auth
        if isinstance(auth, WebhookAuth):
            return await self._exchange(method, f"{auth.url}{method}", params, params, deadline, on_wait)
        assert isinstance(auth, OAuthConfig) and self._oauth is not None
        url = f"{auth.portal_url}/rest/{method}"
        token = await self._oauth.access_token()
        try:
            return await self._exchange(method, url, {**params, "auth": token}, params, deadline, on_wait)
        except PortalError as err:
            if err.code not in EXPIRED_CODES:
                raise
        token = await self._oauth.recover(token, deadline)
        return await self._exchange(method, url, {**params, "auth": token}, params, deadline, on_wait)

    async def _exchange(
        self, method: str, url: str, body: dict[str, Any], call: dict[str, Any], deadline: float, on_wait: OnWait | None
    ) -> Any:
        """Pace, send, and retry what the portal did not run, by its error code; never past the deadline.

        - QUERY_LIMIT_EXCEEDED (or a bare 429/503): the request did not run. Our bucket is resynchronised with
          the portal's, and the call tries again after an exponential, jittered back-off.
        - OPERATION_TIME_LIMIT: wait once for the operating_reset_at seen in earlier answers, if it fits.
        - Connection errors, timeouts, 5xx without a code: at most two more tries (the method only reads).
        - Everything else (OVERLOAD_LIMIT, ACCESS_DENIED, BOT_*, auth errors, ...) is final.
        """
        limited = 0
        failed = 0
        waited_for_reset = False
        while True:
            await self._paced(deadline, on_wait)
            try:
                return await self._post(method, url, body, call, min(self.settings.timeout, _left(deadline)))
            except PortalError as err:
                if err.code == "OPERATION_TIME_LIMIT" and not waited_for_reset:
                    waited_for_reset = True
                    await self._wait_for_reset(method, err, deadline, on_wait)
                    continue
                if err.code != "QUERY_LIMIT_EXCEEDED":
                    raise
                refusal: B24Error = err
            except TransportError as err:
                if err.status in (429, 503):
                    refusal = err
                elif err.retryable and failed < TRANSPORT_RETRIES:
                    failed += 1
                    await self._sleep(_backoff(failed, 0.25, 1.0), deadline, err, on_wait, "the portal to recover")
                    continue
                else:
                    raise
            self._bucket.saturate()
            limited += 1
            if limited >= LIMIT_ATTEMPTS:
                raise _gave_up(refusal, limited)
            await self._sleep(_backoff(limited, 0.5, 8.0), deadline, refusal, on_wait, "the portal's rate limit")

    async def _paced(self, deadline: float, on_wait: OnWait | None) -> None:
        delay = self._bucket.reserve()
        if delay <= 0:
            return
        if delay > _left(deadline):
            raise TransportError(
                f"Too many calls to Bitrix24 at {self.host} at once: this one would wait {delay:.0f} s for its turn "
                f"(B24_RATE_LIMIT={self.settings.rate_limit:g}/s), longer than it may take. Try again shortly."
            )
        if on_wait is not None:
            await on_wait(delay, f"waiting {delay:.1f} s for the Bitrix24 rate limit (B24_RATE_LIMIT)")
        await anyio.sleep(delay)

    async def _sleep(self, delay: float, deadline: float, err: B24Error, on_wait: OnWait | None, what: str) -> None:
        if delay >= _left(deadline):
            raise err
        if on_wait is not None:
            await on_wait(delay, f"retrying in {delay:.1f} s, waiting for {what}")
        await anyio.sleep(delay)

    async def _wait_for_reset(self, method: str, err: PortalError, deadline: float, on_wait: OnWait | None) -> None:
        reset_at = self._reset_at.get(method)
        wait = None if reset_at is None else max(0.0, reset_at - time.time())
        if wait is None or wait >= _left(deadline):
            when = "in a few minutes" if wait is None else f"in {wait:.0f} s"
            raise PortalError(
                f"{err.message} {method} is available again {when}; Bitrix24 limits each method's total run time.",
                code=err.code,
                status=err.status,
                description=err.description,
            )
        await self._sleep(wait, deadline, err, on_wait, f"{method}'s time budget to reset")

    async def _post(self, method: str, url: str, body: dict[str, Any], call: dict[str, Any], limit: float) -> Any:
        # httpx's timeout is per phase (connect, each read...): a trickling portal could outlast it many times
        # over. fail_after bounds the whole exchange.
        try:
            with anyio.fail_after(limit):
                response = await self._http.post(url, json=body)
        except TimeoutError:
            raise TransportError(
                f"Bitrix24 at {self.host} did not answer in time (B24_TIMEOUT={self.settings.timeout:g} s a request, "
                f"{CALL_BUDGET * self.settings.timeout:g} s for the whole call); the portal may be overloaded or "
                "unreachable. Try again later.",
                retryable=True,
            ) from None
        except httpx.HTTPError as exc:
            raise transport_error(self.host, exc) from None
        return self._read(method, response, call)

    def _read(self, method: str, response: httpx.Response, call: dict[str, Any]) -> Any:
        status = response.status_code
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if isinstance(data, dict):
            self._note_time(method, data.get("time"))
        if isinstance(data, dict) and data.get("error"):
            code = str(data["error"])
            description = data.get("error_description")
            raise portal_error(
                code,
                redact(description if isinstance(description, str) else ""),
                status=status,
                host=self.host,
                call={k: v for k, v in call.items() if k in ("dialogId", "botId")},
            )
        if not 200 <= status < 300:
            raise TransportError(
                f"Bitrix24 at {self.host} answered HTTP {status} with {_describe(response.content, data)} "
                "instead of a Bitrix24 error; a proxy or the portal itself may be failing. Try again later.",
                status=status,
                retryable=status >= 500,
            )
        if not isinstance(data, dict) or "result" not in data:
            raise TransportError(
                f"Bitrix24 at {self.host} answered HTTP {status} with {_describe(response.content, data)} "
                "instead of a Bitrix24 result."
            )
        return data["result"]

    def _note_time(self, method: str, block: object) -> None:
        """Remember when the method's time budget resets (self-hosted portals may not say)."""
        if isinstance(block, dict):
            reset_at = block.get("operating_reset_at")
            if isinstance(reset_at, (int, float)) and not isinstance(reset_at, bool):
                self._reset_at[method] = float(reset_at)


def transport_error(host: str, exc: httpx.HTTPError) -> TransportError:
    """A failure below HTTP, explained; the message names the host, never the URL."""
    reason = redact(str(exc)) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
        return TransportError(
            f"TLS certificate of {host} could not be verified ({reason}). For an on-premise portal with "
            "an internal CA, set SSL_CERT_FILE to that CA's PEM file."
        )
    if isinstance(exc, httpx.ConnectError):
        return TransportError(f"Could not connect to Bitrix24 at {host} ({reason}); check the address.", retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"Bitrix24 at {host} timed out ({reason}).", retryable=True)
    return TransportError(f"The connection to Bitrix24 at {host} failed ({reason}); try again.", retryable=True)


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential back-off with jitter, so that refused callers do not come back in lockstep."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography


def _gave_up(err: B24Error, tries: int) -> B24Error:
    err.message = f"{err.message} (gave up after {tries} tries)"
    err.args = (err.message,)
    return err


def _describe(body: bytes, data: object) -> str:
    """What came back, in a few words, without quoting it."""
    head = body.lstrip()[:200].lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<")):
        return "an HTML page"
    if data is None:
        return f"a body that is not JSON ({len(body)} bytes, perhaps cut short)"
    return "JSON without a 'result' field"


__all__ = ["GET_CHAT", "B24Client", "B24Error", "make_http"]

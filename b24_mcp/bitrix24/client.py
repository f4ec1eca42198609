"""The Bitrix24 REST client: one method call, paced, bounded in time and size, retried by Bitrix24's error code.

It knows nothing of MCP; every outcome is the validated result or a `B24Error` safe to show. A call is sent in
layers: the retry policy (`retry.py`) around admission (portal-wide blocks, then the bucket), signing and
recovery (`auth.py`), one bounded exchange (`wire.py`) and decoding (`answers.py`). Signing follows the wait for
a turn, so a long wait never sends a token another window rotated meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx

from ..errors import POLICIES, B24Error, InputError, UpstreamError
from ..settings import CALL_BUDGET, Settings
from .answers import Answers, Report, adapter
from .auth import Auth
from .models import Bot, BotResult, reported
from .pacing import LeakyBucket, LocalBucket, OnWait, SharedBucket
from .retry import Decision, RetryPolicy, Tries
from .wire import Reply, exchange

log = logging.getLogger("b24_mcp.client")

GET_BOT = "imbot.v2.Bot.get"
SCOPE = "scope"


class Deferred(UpstreamError):
    """A background call (the journal's) found no spare slot: interactive calls go first; try again later."""


class SharedPortal(Protocol):
    """What replicas share of the portal (B24_REDIS_URL; `redis_state.SharedPortal`): its bucket, and the
    portal-wide blocks one replica was told about, so that every replica waits them out."""

    bucket: SharedBucket

    async def check(self, method: str, deadline: float, on_wait: OnWait | None) -> None: ...

    async def note(self, method: str, err: B24Error, reset_at: float | None) -> None: ...


class B24Client:
    """Calls REST methods on one portal as one bot: `call` any of them; `get_bot` and `scopes` for `check`."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        auth: Auth,
        shared: SharedPortal | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._http = http
        self._auth = auth
        self._retry = retry or RetryPolicy()
        self._answers = Answers(auth.host, auth.setting, auth.oauth)
        # Replicas share the bucket and the portal-wide blocks. Never a local fallback: with shared state, a
        # failure to reach it fails the call.
        self._shared = shared
        self._bucket: SharedBucket = (
            shared.bucket if shared is not None else LocalBucket(LeakyBucket(settings.rate_limit, settings.rate_burst))
        )

    @property
    def host(self) -> str:
        return self._auth.host

    @property
    def auth(self) -> Auth:
        """How its requests are signed: a webhook, or an OAuth application over its pair store."""
        return self._auth

    @property
    def http(self) -> httpx.AsyncClient:
        """The process's HTTP client, for what is fetched beyond REST calls (get_file's one-time download)."""
        return self._http

    async def warm(self, connect: bool, results: Iterable[Any] = ()) -> None:
        """Before the first call: build the parsers of these result types and, if `connect`, open a kept-alive
        (TLS) connection to the portal with a HEAD of its home page (not a REST call: nothing is counted)."""
        for result in results:
            adapter(result)
        if connect:
            with anyio.move_on_after(self.settings.timeout):
                try:
                    await self._http.head(self._auth.origin + "/")
                except httpx.HTTPError:
                    log.debug("warm-up connection to %s failed; the first call will say why", self.host)

    # --- the methods -------------------------------------------------------------------------------------------

    async def get_bot(self) -> Bot:
        result: BotResult
        result, report = await self.call(GET_BOT, self.bot_params(None, None), BotResult)
        return reported(result.bot, report)

    async def scopes(self) -> list[str]:
        result, report = await self.call(SCOPE, {}, list[str])
        if report:  # a scope that is not a string says nothing b24-mcp could act on
            log.warning("the scope method answered %d values that are not strings; they are left out", len(report))
        return list(result)

    def bot_params(self, bot_id: int | None, bot_token: str | None) -> dict[str, Any]:
        """botId (and, with a webhook, botToken): the call's own, else the configured ones; checked before sending."""
        bot_id = bot_id if bot_id is not None else self.settings.bot_id
        if bot_id is None:
            raise InputError(
                "botId is required: pass botId (the bot's id, e.g. 456) or set B24_BOT_ID in the server's environment."
            )
        if self._auth.oauth:
            return {"botId": bot_id}
        bot_token = bot_token if bot_token is not None else self.settings.bot_token
        if bot_token is None:
            raise InputError(
                "botToken is required with webhook authorisation: pass botToken (the token chosen when the bot "
                "was registered) or set B24_BOT_TOKEN in the server's environment."
            )
        return {"botId": bot_id, "botToken": bot_token}

    # --- one call, in layers: the retry policy, admission and auth, one bounded exchange, decoding ------------

    async def call(
        self,
        method: str,
        params: dict[str, Any],
        result: Any,
        on_wait: OnWait | None = None,
        secrets: Iterable[str | None] = (),
        background: bool = False,
    ) -> tuple[Any, Report]:
        """One REST call, bounded by CALL_BUDGET x B24_TIMEOUT, retried as the retry policy says: the validated
        result, and what of it was set aside as not documented. A `background` call is sent only while half the
        bucket is free (else `Deferred`), so interactive calls never wait for it."""
        request = _Request(method, params, result, on_wait, [s for s in secrets if s], self._deadline(), background)
        tries = self._retry.start(oauth=self._auth.oauth)
        while True:
            await self._admit(request, tries.refusal)
            body, credential = await self._auth.sign(params)
            try:
                return await self._send_single_request(request, body)
            except B24Error as err:
                retry = await self._decide(request, tries, err)  # raises when the call ends here
            if retry.rule == "reauth":
                await self._auth.recover(credential, request.deadline)
            else:
                await self._wait_to_retry(request, retry, tries)

    def _deadline(self) -> float:
        return time.monotonic() + CALL_BUDGET * self.settings.timeout

    async def _admit(self, request: _Request, retrying: B24Error | None) -> None:
        """Wait out a portal-wide block the replicas know of, then the request's turn under B24_RATE_LIMIT."""
        if self._shared is not None:
            await self._shared.check(request.method, request.deadline, request.on_wait)
        paced = self._spare_slot() if request.background else self._paced(request.deadline, request.on_wait, retrying)
        request.waited = await paced

    async def _send_single_request(self, request: _Request, body: dict[str, Any]) -> tuple[Any, Report]:
        """One exchange with the portal, decoded; logged when it succeeds (a refusal is logged by `_decide`)."""
        request.started = time.monotonic()
        reply = await self._send(request.method, body, request.deadline, request.waited)
        read = self._answers.read(request.method, reply, request.params, request.result, request.secrets)
        self._log(request, reply.status, "ok")
        return read

    async def _decide(self, request: _Request, tries: Tries, err: B24Error) -> Decision:
        """Tell the replicas, ask the retry policy, log what follows; raise what ends the call."""
        reset_at = self._answers.reset_at.get(request.method)
        if self._shared is not None:
            await self._shared.note(request.method, err, reset_at)
        decision = tries.decide(err, request.method, reset_at, request.deadline)
        if decision.rule == "rate_limit":  # the portal's bucket is full: ours is made to say so too
            await self._bucket.saturate()
        self._log(request, err.status, err.code or type(err).__name__, decision.then)
        if decision.error is not None:
            raise decision.error from None
        return decision

    async def _wait_to_retry(self, request: _Request, retry: Decision, tries: Tries) -> None:
        if retry.delay >= _left(request.deadline):
            assert tries.refusal is not None
            raise tries.refusal
        if request.on_wait is not None:
            why = POLICIES[retry.rule].why
            await request.on_wait(retry.delay, f"retrying in {retry.delay:.1f} s, waiting for {why}")
        await anyio.sleep(retry.delay)

    async def _paced(self, deadline: float, on_wait: OnWait | None, retrying: B24Error | None = None) -> float:
        """Wait for the request's turn under B24_RATE_LIMIT; returns the seconds waited."""
        delay = await self._bucket.reserve(max_wait=_left(deadline))
        if delay is None:
            if retrying is not None:  # the call ran out of time retrying: the portal's own refusal says why
                raise retrying
            raise UpstreamError(
                f"Too many calls to Bitrix24 at {self.host} at once: this one would wait longer than it may take "
                f"for its turn (B24_RATE_LIMIT={self.settings.rate_limit:g}/s). Try again in a few seconds."
            )
        if delay <= 0:
            return 0.0
        try:
            if on_wait is not None:
                await on_wait(delay, f"waiting {delay:.1f} s for the Bitrix24 rate limit (B24_RATE_LIMIT)")
            await anyio.sleep(delay)
        except BaseException:
            with anyio.CancelScope(shield=True):  # cancelled while waiting: the slot goes back to those in line
                await self._bucket.release()
            raise
        return delay

    async def _spare_slot(self) -> float:
        if await self._bucket.reserve(0.0, spare=max(1, self.settings.rate_burst // 2)) is None:
            raise Deferred(f"Interactive calls to Bitrix24 at {self.host} go first; the journal waits its turn.")
        return 0.0

    async def _send(self, method: str, body: dict[str, Any], deadline: float, waited: float = 0.0) -> Reply:
        # httpx's timeout is per phase (connect, each read...): a trickling portal could outlast it many times
        # over. fail_after bounds the whole exchange.
        bound = min(self.settings.timeout, _left(deadline))
        try:
            with anyio.fail_after(bound):
                return await exchange(self._http, self._auth.url(method), host=self.host, json=body)
        except TimeoutError:
            if waited and bound < self.settings.timeout:  # the wait for its turn left the portal little time
                raise UpstreamError(
                    f"This call waited {waited:.1f} s for its turn under B24_RATE_LIMIT="
                    f"{self.settings.rate_limit:g}/s, which left Bitrix24 at {self.host} only {bound:.2g} s of the "
                    f"{CALL_BUDGET * self.settings.timeout:g} s a call may take; too many calls at once. Try again in "
                    "a few seconds.",
                    retryable=True,
                ) from None
            raise UpstreamError(
                f"Bitrix24 at {self.host} did not answer in time (B24_TIMEOUT={self.settings.timeout:g} s a request, "
                f"{CALL_BUDGET * self.settings.timeout:g} s for the whole call); the portal may be overloaded or "
                "unreachable. Try again later.",
                retryable=True,
            ) from None

    def _log(self, request: _Request, status: int | None, outcome: str, then: str = "") -> None:
        """DEBUG: one line per request (method, ids, HTTP status, Bitrix24 code, duration, waits, what comes next)."""
        if log.isEnabledFor(logging.DEBUG):
            ids = "".join(f" {k}={request.params[k]}" for k in ("dialogId", "messageId") if k in request.params)
            waited = request.waited
            paced = f" after waiting {waited:.1f} s for B24_RATE_LIMIT" if waited > 0 else ""
            log.debug(
                "%s%s -> HTTP %s %s in %.0f ms%s%s",
                request.method,
                ids,
                status or "-",
                outcome,
                (time.monotonic() - request.started) * 1000,
                paced,
                f"; {then}" if then else "",
            )


@dataclass
class _Request:
    """One call as its layers see it: what is asked, its deadline (monotonic), and its current request's wait
    for its turn and start, for the log line."""

    method: str
    params: dict[str, Any]
    result: Any
    on_wait: OnWait | None
    secrets: list[str]
    deadline: float
    background: bool = False  # the journal's: sent only while half the bucket is free
    waited: float = 0.0
    started: float = 0.0


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


__all__ = ["B24Client", "B24Error", "OnWait"]

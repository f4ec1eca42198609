"""The Bitrix24 REST client: one method call, paced, bounded in time and size, retried by Bitrix24's error code.

It knows Bitrix24 and nothing of MCP. Every outcome is either the method's validated result or a `B24Error`
whose text is safe to show: Bitrix24's codes become `PortalError`s with what to do next (`errors.py`), and
everything between here and the portal becomes an `UpstreamError` naming the host and the HTTP status, never
the URL, whose path holds the webhook code (`wire.py`). Signing and recovery belong to the auth object
(`auth.py`); which failures are retried, to `errors.classify`. One `httpx.AsyncClient` serves the process.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import anyio
import httpx
from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from ..errors import (
    POLICIES,
    AnswerError,
    B24Error,
    InputError,
    PortalError,
    UpstreamError,
    available_later,
    classify,
    clean_text,
    error_parts,
    portal_error,
)
from ..logs import redact
from ..settings import CALL_BUDGET, Settings
from .auth import Auth
from .mismatches import Unusable, accept
from .models import Answer, Bot, BotResult, Mismatch, reported
from .pacing import LeakyBucket, LocalBucket, OnWait, SharedBucket
from .wire import MAX_JSON_VALUES, Reply, exchange, redirect_error, too_many_values

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


R = TypeVar("R")
Report = list[Mismatch]
"""What of an answer was set aside as not documented (`mismatches.py`), in the order of the answer."""


@functools.cache
def _adapter(result: Any) -> TypeAdapter[Any]:
    """The one-pass parser of a whole body for a method's result type (built once per type)."""
    return TypeAdapter(Answer[result])


class B24Client:
    """Calls REST methods on one portal as one bot: `call` any of them; `get_bot` and `scopes` for `check`."""

    def __init__(
        self, settings: Settings, http: httpx.AsyncClient, auth: Auth, shared: SharedPortal | None = None
    ) -> None:
        self.settings = settings
        self._http = http
        self._auth = auth
        self._reset_at: dict[str, float] = {}  # method -> unix time its time budget resets
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
    def http(self) -> httpx.AsyncClient:
        """The process's HTTP client, for what is fetched beyond REST calls (get_file's one-time download)."""
        return self._http

    async def warm(self, connect: bool, results: Iterable[Any] = ()) -> None:
        """Before the first call: build the parsers of these result types and, if `connect`, open a kept-alive
        (TLS) connection to the portal with a HEAD of its home page (not a REST call: nothing is counted)."""
        for result in results:
            _adapter(result)
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

    # --- one call ------------------------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: dict[str, Any],
        result: Any,
        on_wait: OnWait | None = None,
        secrets: Iterable[str | None] = (),
        background: bool = False,
    ) -> tuple[Any, Report]:
        """One REST call, bounded by CALL_BUDGET x B24_TIMEOUT, retried as `errors.classify` says: the validated
        result, and what of it was set aside as not documented. A `background` call is sent only while half the
        bucket is free (else `Deferred`), so interactive calls never wait for it."""
        deadline = time.monotonic() + CALL_BUDGET * self.settings.timeout
        masked = [s for s in secrets if s]
        used: Counter[str] = Counter()
        last: B24Error | None = None  # the refusal being retried: what to report if the retry cannot fit
        while True:
            if self._shared is not None:
                await self._shared.check(method, deadline, on_wait)
            waited = await (self._spare_slot() if background else self._paced(deadline, on_wait, last))
            body, credential = await self._auth.sign(params)
            started = time.monotonic()
            try:
                reply = await self._send(method, body, deadline, waited)
                read = self._read(method, reply, params, result, masked)
                self._log(method, params, reply.status, started, waited, "ok")
                return read
            except B24Error as err:
                outcome = err.code or type(err).__name__
                done = functools.partial(self._log, method, params, err.status, started, waited)  # + what next
                if self._shared is not None:
                    await self._shared.note(method, err, self._reset_at.get(method))
                rule = classify(err, oauth=self._auth.oauth)
                if rule == "final":
                    done(outcome, "not retried")
                    raise
                used[rule] += 1
                last = err
                policy = POLICIES[rule]
                if used[rule] > policy.tries:
                    done(outcome, f"giving up after {used[rule]} tries")
                    raise (err.gave_up(used[rule]) if rule == "rate_limit" else err) from None
                if rule == "reauth":
                    done(outcome, "renewing the OAuth token, then retrying")
                    await self._auth.recover(credential, deadline)
                    continue
                if rule == "rate_limit":
                    await self._bucket.saturate()
                if rule == "wait_reset":
                    assert isinstance(err, PortalError)
                    try:
                        delay = self._reset_wait(method, err, deadline)
                    except PortalError:
                        done(outcome, "not waited: its time budget resets too late")
                        raise
                else:
                    delay = _backoff(used[rule], policy.base, policy.cap)
                late = delay >= _left(deadline)  # then _sleep raises
                done(outcome, "no time left for a retry" if late else f"retry {used[rule]} in {delay:.1f} s")
                await self._sleep(delay, deadline, err, on_wait, policy.why)

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

    async def _sleep(self, delay: float, deadline: float, err: B24Error, on_wait: OnWait | None, what: str) -> None:
        if delay >= _left(deadline):
            raise err
        if on_wait is not None:
            await on_wait(delay, f"retrying in {delay:.1f} s, waiting for {what}")
        await anyio.sleep(delay)

    def _reset_wait(self, method: str, err: PortalError, deadline: float) -> float:
        reset_at = self._reset_at.get(method)
        wait = None if reset_at is None else max(0.0, reset_at - time.time())
        if wait is None or wait >= _left(deadline):
            raise available_later(err, method, wait)
        return wait

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

    def _read(
        self, method: str, reply: Reply, call: dict[str, Any], result: Any, secrets: list[str]
    ) -> tuple[Any, Report]:
        status = reply.status
        if reply.location is not None:
            raise redirect_error(self.host, status, reply.location, self._auth.setting)
        if too_many_values(reply.body):
            raise AnswerError(
                f"Bitrix24 at {self.host} answered HTTP {status} with more than {MAX_JSON_VALUES:,} JSON values; "
                "no Bitrix24 answer holds that many, and reading it would take hundreds of MB. Nothing to show.",
                status=status,
            )
        report: Report = []
        try:
            answer = _adapter(result).validate_json(reply.body)
        except ValidationError as err:
            answer, report = self._salvage(method, reply, call, result, err, secrets)
        if b"NaN" in reply.body or b"Infinity" in reply.body:
            _refuse_non_standard_numbers(self.host, reply.body)
        self._note_time(method, answer.time)
        if answer.error is not None:
            self._raise_portal_error(method, answer, status, call, secrets)
        if not 200 <= status < 300:
            raise UpstreamError(
                f"Bitrix24 at {self.host} answered HTTP {status} with JSON that is not a Bitrix24 error; a proxy or "
                "the portal itself may be failing. Try again later.",
                status=status,
                retryable=status >= 500,
            )
        if "result" not in answer.model_fields_set or answer.result is None:
            raise AnswerError(f"Bitrix24 at {self.host} answered {method} with JSON without a 'result' field.")
        return answer.result, report

    def _salvage(
        self, method: str, reply: Reply, call: dict[str, Any], result: Any, err: ValidationError, secrets: list[str]
    ) -> tuple[Answer[Any], Report]:
        """The body did not parse as the method's answer: find the Bitrix24 error it still carries, or accept it
        with what does not fit set aside, or say why it cannot be read."""
        status, problems = reply.status, err.errors(include_url=False, include_input=False)
        invalid_json = [p for p in problems if p["type"] == "json_invalid"]
        if invalid_json:
            detail = str(invalid_json[0].get("ctx", {}).get("error", ""))
            if "recursion limit" in detail:
                raise AnswerError(
                    f"Bitrix24 at {self.host} answered HTTP {status} with JSON nested too deeply to read (more than "
                    "about 200 levels); no Bitrix24 answer looks like that.",
                    status=status,
                )
            ok = 200 <= status < 300
            raise (AnswerError if ok else UpstreamError)(
                f"Bitrix24 at {self.host} answered HTTP {status} with {_describe(reply.body)} instead of a "
                f"Bitrix24 {'result' if ok else 'error'}" + ("." if ok else "; a proxy or the portal may be failing."),
                status=status,
                retryable=status >= 500,
            )
        loose: Answer[Any] = _adapter(Any).validate_json(reply.body)
        if loose.error is not None:
            self._raise_portal_error(method, loose, status, call, secrets)
        if loose.result is None:  # an answer without a result: _read says so
            return loose, []
        try:
            value, report = accept(result, loose.result, method)
        except Unusable as unusable:
            where = "; ".join(unusable.problems)
        except ValidationError as still:  # what setting fields aside uncovered, pass after pass
            where = "; ".join(f"result.{p['loc']}: {p['msg']}" for p in still.errors(include_url=False)[:5])
        else:
            if report:
                log.warning(
                    "%s answered %d value(s) unlike its documentation, set aside: %s",
                    method,
                    len(report),
                    ", ".join(entry["path"] for entry in report[:10]),
                )
            return loose.model_copy(update={"result": value}), [Mismatch.model_construct(**e) for e in report]
        # Name the fields and the documented types; never echo values (they are the portal's data).
        raise AnswerError(
            f"Bitrix24 at {self.host} answered {method} without what b24-mcp needs to show it ({where}). "
            "Please report it with your portal's version."
        )

    def _raise_portal_error(
        self, method: str, answer: Answer[Any], status: int, call: dict[str, Any], secrets: list[str]
    ) -> None:
        code, description = error_parts(answer.error, answer.error_description)
        if code in (None, "0") and answer.error in ("", "0") and description:  # PHP's error with a message only
            said = clean_text(description, mask=lambda text: redact(text, secrets))
            raise AnswerError(
                f"Bitrix24 at {self.host} answered HTTP {status} with an error that has no code: {said}",
                status=status,
                retryable=status >= 500,
            )
        if code is None:
            raise AnswerError(
                f"Bitrix24 at {self.host} answered HTTP {status} with an error whose code is not readable "
                "(not repeated here); a proxy or the portal may be failing.",
                status=status,
                retryable=status >= 500,
            )
        raise portal_error(
            code,
            description,
            status=status,
            host=self.host,
            call={
                **{k: v for k, v in call.items() if k in ("dialogId", "botId", "messageId", "fileId")},
                "method": method,
            },
            oauth=self._auth.oauth,
            secrets=secrets,
        )

    def _note_time(self, method: str, block: object) -> None:
        """Remember when the method's time budget resets (self-hosted portals may not say)."""
        if isinstance(block, dict):
            reset_at = block.get("operating_reset_at")
            if isinstance(reset_at, (int, float)) and not isinstance(reset_at, bool):
                self._reset_at[method] = float(reset_at)

    def _log(
        self,
        method: str,
        params: dict[str, Any],
        status: int | None,
        started: float,
        waited: float,
        outcome: str,
        then: str = "",
    ) -> None:
        """DEBUG: one line per request (method, ids, HTTP status, Bitrix24 code, duration, waits, what comes next)."""
        if log.isEnabledFor(logging.DEBUG):
            ids = "".join(f" {k}={params[k]}" for k in ("dialogId", "messageId") if k in params)
            paced = f" after waiting {waited:.1f} s for B24_RATE_LIMIT" if waited > 0 else ""
            log.debug(
                "%s%s -> HTTP %s %s in %.0f ms%s%s",
                method,
                ids,
                status or "-",
                outcome,
                (time.monotonic() - started) * 1000,
                paced,
                f"; {then}" if then else "",
            )


def _refuse_non_standard_numbers(host: str, body: bytes) -> None:
    """NaN and Infinity are not JSON; a lax parser would pass them on and the wire would turn them into null."""
    try:
        from_json(body, allow_inf_nan=False)
    except ValueError:
        raise AnswerError(
            f"Bitrix24 at {host} answered with NaN or Infinity, which are not JSON numbers; nothing to show."
        ) from None


def _left(deadline: float) -> float:
    return deadline - time.monotonic()


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential back-off with jitter, so that refused callers do not come back in lockstep."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography


def _describe(body: bytes) -> str:
    """What came back, in a few words, without quoting it."""
    head = body.lstrip()[:200].lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<")):
        return "an HTML page"
    return f"a body that is not JSON ({len(body)} bytes, perhaps cut short)"


__all__ = ["B24Client", "B24Error", "OnWait"]

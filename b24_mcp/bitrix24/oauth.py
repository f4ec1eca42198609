"""OAuth for Bitrix24 applications: one renewal algorithm (`OAuthSession`) over a small store of the shared pair.

Bitrix24 rotates refresh tokens: every refresh kills the old pair, so a pair received and then lost locks the user
out until they re-authorise. Hence the store (`token_file` or `redis_state`) is re-read first, only a token that is
still the stored one is refreshed, under the store's lock, and the new pair is written with a compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import anyio

from ..errors import AuthError
from ..logs import fingerprint, redact
from ..settings import CALL_BUDGET
from .token_server import TokenPair, request_pair

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("b24_mcp.oauth")
T = TypeVar("T")
RENEWAL_LIMIT = 30.0  # seconds a sent token request may take, when the session is not given its own limit
GRACE = 0.5  # seconds a caller out of time waits on for a renewal's own error, before its request is sent
SETTLE_LIMIT = 30.0  # seconds a shutting-down process waits for a renewal under way


@dataclass(frozen=True)
class Stored:
    """A pair as a store keeps it, with the fingerprint of the seed (environment pair) it descends from."""

    seed: str
    pair: TokenPair


class SaveFailed(Exception):
    """A store could not take a pair; the message names the store and the fix (never a token)."""


class LockBusy(Exception):
    """A store's lock was not had by the deadline: why, and what to do."""

    def __init__(self, why: str, advice: str = "") -> None:
        super().__init__(why)
        self.why = why
        self.advice = advice


class PairStore(Protocol):
    """Where the pair is shared: read it, lock it, write it over the one it replaces."""

    async def first(self, seed: Stored) -> Stored | None:
        """The stored pair at first use (a store may put `seed` in place when none is)."""
        ...

    async def read(self, deadline: float) -> Stored | None: ...

    def lock(self, deadline: float) -> AbstractAsyncContextManager[float]:
        """Hold the lock that makes a renewal single across processes; yields when it expires (time.monotonic;
        inf: never). LockBusy if not had by `deadline`."""
        ...

    async def write(self, new: Stored, replaces: str, *, locked: bool) -> bool | None:
        """Store `new` if the stored refresh token is still `replaces` ('': none stored): True; False if another
        pair was stored since; None if the lock is busy now (`locked`: held already). Raises SaveFailed."""
        ...


class Renewals:
    """Token requests under way, owned by the process rather than by the calls that wanted them: each stores its
    pair the moment it arrives, so a caller cancelled, out of time or shut down cannot lose a rotated pair."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exit_code: int | None = None

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its callers may all have gone
        if self._exit_code is not None and not self._tasks:
            logging.shutdown()
            os._exit(self._exit_code)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def settle(self, limit: float = SETTLE_LIMIT) -> None:
        """Wait, at most `limit` seconds and shielded, for the renewals under way (a shutdown calls this)."""
        with anyio.CancelScope(shield=True):
            if self._tasks:
                log.info("waiting for the OAuth token renewal under way to be saved before stopping")
                await asyncio.wait(list(self._tasks), timeout=limit)

    def exit_when_settled(self, code: int, limit: float = SETTLE_LIMIT) -> None:
        """End the process now, or (a renewal under way) once it is saved, at most `limit` s from now: for a
        signal handler, whose process must not die between Bitrix24 rotating the pair and b24-mcp saving it."""
        if not self._tasks:
            os._exit(code)
        self._exit_code = code
        timer = threading.Timer(limit, os._exit, (code,))
        timer.daemon = True
        timer.start()


RENEWALS = Renewals()


class OAuthSession:
    """The live pair of one application on one portal, shared through `store`; `auth.TokenSession`."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        seed: TokenPair,
        store: PairStore,
        limit: float = RENEWAL_LIMIT,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._token_host = urlsplit(token_url).netloc
        self._client_id = client_id
        self._client_secret = client_secret
        self._seed = Stored(fingerprint(seed.refresh_token), seed)
        self.store = store
        self.limit = limit
        self._current: Stored | None = None  # the live pair, and the seed it descends from
        self._pending: tuple[Stored, str] | None = None  # renewed, not yet stored; the refresh token it replaces
        self._spent: set[str] = set()  # fingerprints of the refresh tokens this process used up
        self._renewal: asyncio.Task[str] | None = None
        self._sent = False  # the renewal under way has sent its token request
        self._lock = anyio.Lock()  # one first read, one save at a time
        self._warned_save: str | None = None

    async def access_token(self) -> str:
        """The token to send. A renewed pair the store could not take is stored now, if it can be."""
        current = await self._live()
        if self._pending is not None and not self._renewing():
            await self._flush()
        return current.pair.access_token

    async def recover(self, rejected_access_token: str, deadline: float) -> str:
        """A token to retry with after the portal rejected `rejected_access_token`, by `deadline` (time.monotonic).

        A pair another process or task put in place is taken without refreshing; only a rejected token that is
        still the live one is refreshed, once, however many callers ask. The caller waits no longer than its
        deadline; a renewal under way goes on without it. Raises AuthError.
        """
        current = await self._live()
        if not self._renewing():
            if current.pair.access_token != rejected_access_token and self._pending is None:
                return current.pair.access_token  # a concurrent caller in this process already renewed it
            self._sent = False
            self._renewal = RENEWALS.start(self._recover(rejected_access_token, deadline))
        renewal = self._renewal
        assert renewal is not None
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            return await asyncio.shield(renewal)
        if not self._sent:  # still at the lock or the store, bounded by the same deadline: its own words say why
            with anyio.move_on_after(GRACE):
                return await asyncio.shield(renewal)
        raise late_error(
            self._token_host,
            "the OAuth server has not answered yet",
            "The renewal goes on, and its pair is saved the moment it arrives: try again in a few seconds.",
        )

    def _renewing(self) -> bool:
        return self._renewal is not None and not self._renewal.done()

    async def _live(self) -> Stored:
        if self._current is None:
            async with self._lock:
                if self._current is None:
                    stored = await self.store.first(self._seed)
                    # The stored pair descends from this seed: it is newer. A different seed means the user
                    # re-authorised and pasted fresh tokens, which then win until rejected.
                    self._use(stored if stored is not None and stored.seed == self._seed.seed else self._seed)
        assert self._current is not None
        return self._current

    def _use(self, stored: Stored) -> str:
        """Make `stored` the live pair; its tokens join the redactor, so no log or error can quote them."""
        redact.add_rotating([stored.pair.access_token, stored.pair.refresh_token])
        self._current = stored
        return stored.pair.access_token

    async def _recover(self, rejected: str, deadline: float) -> str:
        """The renewal task: the lock and the re-reads by the first caller's deadline, the request by its own."""
        await self._flush()
        current = await self._live()
        if current.pair.access_token != rejected:
            return current.pair.access_token
        if (newer := self._take_newer(await self.store.read(deadline), rejected)) is not None:
            return newer
        try:
            async with self.store.lock(deadline) as lock_expires:
                stored = await self.store.read(deadline)  # again: renewed while we waited for the lock?
                if (newer := self._take_newer(stored, rejected)) is not None:
                    return newer
                return await self._refresh(current, stored, min(time.monotonic() + self.limit, lock_expires))
        except LockBusy as busy:
            raise late_error(self._token_host, busy.why, busy.advice) from None

    def _take_newer(self, stored: Stored | None, rejected: str) -> str | None:
        """The access token of the store's pair, made live, if it replaced the rejected one; else None."""
        if stored is None or stored.pair.access_token == rejected:
            return None
        if fingerprint(stored.pair.refresh_token) in self._spent:
            return None  # a pair this process renewed itself, whose successor could not be stored: dead
        current = self._current
        if current is not None:
            if stored.seed != current.seed and current is self._seed:
                return None  # another seed's, while this process holds its own, fresher, seed
            if stored.seed == current.seed and stored.pair.obtained_at < current.pair.obtained_at:
                # Older than the pair in hand (a store that lost its data, re-seeded from the environment).
                log.warning("not taking the stored OAuth pair: it is older than the one this process holds")
                return None
        if self._pending is not None and stored.pair.refresh_token == self._pending[1]:
            return None  # the pair our unsaved one is meant to overwrite has not changed since
        log.info("using the token pair another b24-mcp process renewed")
        return self._use(stored)

    async def _refresh(self, current: Stored, stored: Stored | None, until: float) -> str:
        self._sent = True
        pair = await request_pair(
            self._http, self._token_url, self._client_id, self._client_secret, current.pair.refresh_token, until
        )
        # No await until the pair is live and pending: it is the only copy of a rotated secret.
        self._spent.add(fingerprint(current.pair.refresh_token))
        self._pending = (Stored(current.seed, pair), stored.pair.refresh_token if stored is not None else "")
        self._use(self._pending[0])
        await self._save(locked=True)
        log.info("access token renewed")
        return pair.access_token

    async def _flush(self) -> None:
        """Retry storing a renewed pair that could not be stored before."""
        if self._pending is not None:
            async with self._lock:
                if self._pending is not None:
                    await self._save(locked=False)

    async def _save(self, *, locked: bool) -> None:
        """Store the pending pair; on failure it stays pending (and live), the first failure told loudly."""
        pending = self._pending
        assert pending is not None
        with anyio.CancelScope(shield=True):
            try:
                done = await self.store.write(pending[0], pending[1], locked=locked)
            except SaveFailed as err:
                if self._warned_save != str(err):
                    self._warned_save = str(err)
                    log.warning(
                        "%s This process keeps the renewed OAuth tokens in memory and goes on working, and retries "
                        "the save at each call; until it succeeds, other b24-mcp processes and the next start "
                        "cannot renew the token.",
                        err,
                    )
                return
        if done is None:
            return  # the lock is busy: next time
        if self._pending is pending:
            self._pending = None
        if not done:
            log.warning(
                "not storing the renewed OAuth pair: another b24-mcp process stored a pair since; this process goes "
                "on with its own pair until it is rejected"
            )
        elif self._warned_save is not None:
            log.info("stored the renewed OAuth tokens at last")
        self._warned_save = None


LATE_ADVICE = "Try again; if the OAuth server is slow, raise B24_TIMEOUT."


def late_error(token_host: str, why: str, advice: str = "") -> AuthError:
    return AuthError(
        f"The OAuth access token could not be renewed with the OAuth server {token_host} within the "
        f"call's time limit ({CALL_BUDGET} x B24_TIMEOUT): {why}. {advice or LATE_ADVICE}"
    )

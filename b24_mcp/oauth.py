"""OAuth for Bitrix24 applications: the access token to send, and a working one back after the portal rejects it.

Bitrix24 rotates refresh tokens: every refresh returns a new pair and kills the old refresh token and the previous
access token. A pair that is received and then lost (a crash, a failed save, or two processes refreshing at once,
the second spending a token the first just killed) locks the user out until they re-authorise by hand. And several
editor windows each run their own b24-mcp for the same app, so another process rotating the pair under us is the
normal case. Hence:

- the pair lives in a token file that every process of the app shares; the environment only seeds it;
- nothing is refreshed on a timer: `recover()` runs after the portal rejected a token, and first re-reads the file.
  A rejected token is most often one another window already replaced: its new pair is taken as it is;
- only a rejected token that is still the live one is refreshed, once per expiry: in a process, concurrent callers
  wait for one refresh (an anyio lock); across processes, a file lock is taken and the file re-read, so a pair
  another process got meanwhile is reused instead of spending a dead token;
- the new pair is kept in memory the moment it arrives, then written atomically (temp file, fsync, rename; mode
  0600) before it is used. If the write fails (read-only directory, full disk, a file of another user), the pair
  still answers the call, one warning says so, and the save is retried at each later use until it succeeds: a spent
  refresh token is never thrown away. If the lock file cannot be made, the refresh goes on under the in-process
  lock alone, with a warning;
- the lock wait and the OAuth server's answer count against the call's deadline (CALL_BUDGET x B24_TIMEOUT), as
  portal requests do; the lock is polled in a worker thread for no longer than the time left, so none waits forever;
- `check_token_path` refuses, at start-up, a token file that other users could replace (ssh's rule for keys).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx

from .errors import AuthError, B24Error, ConfigError, UpstreamError, clean_code, clean_text
from .logs import redact
from .settings import CALL_BUDGET

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("b24_mcp.oauth")
TOKEN_ANSWER_MAX = 64 * 1024  # a token answer is a few hundred bytes; anything larger is not one
LOCK_POLL = 0.05  # seconds between two tries of the token file's lock


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float | None = None
    obtained_at: float = 0.0

    def __repr__(self) -> str:  # reprs land in logs and tracebacks (str() uses it too)
        return f"TokenPair(tokens=***, expires_at={self.expires_at}, obtained_at={self.obtained_at})"


def fingerprint(token: str) -> str:
    """Identifies a token without revealing it: which seed a saved pair descends from."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def default_token_file(portal_host: str, client_id: str) -> Path:
    """One file per portal and application, in the user's data directory."""
    import platformdirs  # only OAuth users pay for it, and only on first use

    safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", portal_host)
    return platformdirs.user_data_path("b24-mcp") / f"oauth-{safe_host}-{fingerprint(client_id)[:12]}.json"


def lock_file_of(token_file: Path) -> Path:
    """The lock beside the token file. An OS lock on it is what counts, not its existence: it stays in place."""
    return token_file.with_name(f"{token_file.name}.lock")


def check_token_path(path: Path) -> None:
    """Refuse, in one ConfigError line, a token file that other users could swap: ssh's rule for keys.

    Whoever can replace the file or its lock can feed b24-mcp tokens of their choosing, or hold the lock forever;
    whoever owns it reads the refresh token. So the file's directory (or, before it exists, its nearest existing
    ancestor, under which it will be made 0700) must not be writable by group or others unless the sticky bit is
    set, and the directory, an existing token file and an existing lock file must belong to this user.
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # Windows: access is a matter of ACLs, not of mode bits and owners
        return
    uid = getuid()
    path = path.absolute()

    def refused(why: str, fix: str = "set") -> ConfigError:
        return ConfigError(
            f"B24_TOKEN_FILE {path} is not in a safe place: {why}; {fix} B24_TOKEN_FILE to a file in a directory "
            "that only you can write to"
        )

    directory = existing = path.parent
    while True:
        try:
            st = existing.stat()
            break
        except FileNotFoundError:
            if existing.parent == existing:
                return
            existing = existing.parent
        except OSError as exc:
            raise refused(f"{existing} cannot be checked ({_why(exc)})") from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise refused(
            f"other users can write to {existing} (mode {mode:04o}, no sticky bit) and could replace the file",
            f"run chmod go-w {existing}, or set",
        )
    if existing == directory and st.st_uid != uid:
        raise refused(f"the directory belongs to another user (uid {st.st_uid}; this is uid {uid})")
    for what, file in (("the token file", path), ("its lock file", lock_file_of(path))):
        try:
            owner = file.stat().st_uid
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise refused(f"{what} {file} cannot be checked ({_why(exc)})") from None
        if owner != uid:
            raise refused(f"{what} {file} belongs to another user (uid {owner}; this is uid {uid})")


@dataclass(frozen=True)
class _Saved:
    seed: str
    pair: TokenPair


@dataclass(frozen=True)
class _Pending:
    """A renewed pair not yet on disk, and the file's pair it is meant to replace."""

    seed: str
    pair: TokenPair
    replaces: TokenPair | None


class PairHolder:
    """The live pair as either shared store keeps it (the token file here, Redis in `redis_state`), and the one
    rule for taking a stored pair instead: it is not the rejected one, not one this process spent itself, and not
    another seed's while this process still holds its own fresher seed from the environment."""

    def __init__(
        self, *, http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str, seed: TokenPair
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._token_host = urlsplit(token_url).netloc
        self._client_id = client_id
        self._client_secret = client_secret
        self._seed = seed
        self._seed_fp = fingerprint(seed.refresh_token)
        self._current: TokenPair | None = None
        self._lineage = self._seed_fp  # the seed the current pair descends from; stored with it
        self._spent: set[str] = set()  # fingerprints of the refresh tokens this process used up
        self._lock = anyio.Lock()

    def _use(self, pair: TokenPair, lineage: str) -> TokenPair:
        """Make `pair` the live one; its tokens join the redactor, so no log or error can quote them."""
        redact.add_rotating([pair.access_token, pair.refresh_token])
        self._current = pair
        self._lineage = lineage
        return pair

    def _adoptable(self, pair: TokenPair, seed: str, rejected: str) -> bool:
        if pair.access_token == rejected:
            return False
        if fingerprint(pair.refresh_token) in self._spent:
            return False  # a pair this process renewed itself, whose successor could not be stored: dead
        return not (seed != self._seed_fp and self._current is self._seed)  # another seed's, while ours is fresher


class OAuthSession(PairHolder):
    """The live token pair of one application on one portal, shared with other processes through the token file."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        seed: TokenPair,
        token_file: Path,
    ) -> None:
        super().__init__(http=http, token_url=token_url, client_id=client_id, client_secret=client_secret, seed=seed)
        self.token_file = token_file
        self._lock_file = lock_file_of(token_file)
        self._pending: _Pending | None = None  # renewed, not yet saved
        # Each trouble is told once, until it clears.
        self._warned_save = False
        self._warned_lock = False
        self._warned_read: str | None = None

    async def access_token(self) -> str:
        """The token to send. A renewed pair whose save failed is saved now, if the file can take it."""
        if self._pending is not None:
            try:
                self._lock.acquire_nowait()
            except anyio.WouldBlock:
                pass  # a recovery is under way, and saves
            else:
                try:
                    await self._flush()
                finally:
                    self._lock.release()
        return self._pair().access_token

    async def recover(self, rejected_access_token: str, deadline: float) -> str:
        """A token to retry with after the portal rejected `rejected_access_token`, by `deadline` (time.monotonic).

        A pair another process or task put in place is taken without refreshing; only a rejected token that is
        still the live one is refreshed, once, however many callers ask. Raises AuthError, never past the deadline.
        """
        with self._bounded(deadline, "another request of this b24-mcp process is still renewing it"):
            await self._lock.acquire()
        try:
            await self._flush()
            current = self._pair()
            if current.access_token != rejected_access_token:
                return current.access_token  # a concurrent caller in this process already renewed it
            saved = await anyio.to_thread.run_sync(self._read)
            if (newer := self._take_newer(saved, rejected_access_token)) is not None:
                return newer
            async with self._file_lock(deadline):
                saved = await anyio.to_thread.run_sync(self._read)  # again: renewed while we waited for the lock?
                if (newer := self._take_newer(saved, rejected_access_token)) is not None:
                    return newer
                return await self._refresh(current, saved, deadline)
        finally:
            self._lock.release()

    def _pair(self) -> TokenPair:
        if self._current is not None:
            return self._current
        saved = self._read()
        # The saved pair descends from this seed: it is newer. A different seed means the user
        # re-authorised and pasted fresh tokens, which then win.
        if saved is not None and saved.seed == self._seed_fp:
            return self._use(saved.pair, saved.seed)
        return self._use(self._seed, self._seed_fp)

    def _take_newer(self, saved: _Saved | None, rejected: str) -> str | None:
        """The access token of the file's pair, made live, if it replaced the rejected one; else None."""
        if saved is None or not self._adoptable(saved.pair, saved.seed, rejected):
            return None
        if self._pending is not None and saved.pair == self._pending.replaces:
            return None  # the file our unsaved pair is meant to overwrite has not changed since
        log.info("using the token pair another b24-mcp process renewed")
        return self._use(saved.pair, saved.seed).access_token

    async def _refresh(self, current: TokenPair, saved: _Saved | None, deadline: float) -> str:
        pair = await self._request(current.refresh_token, deadline)
        # No await from here until the pair is live and pending: a cancellation must not lose it.
        self._spent.add(fingerprint(current.refresh_token))
        self._pending = _Pending(self._lineage, pair, saved.pair if saved is not None else None)
        self._use(pair, self._lineage)
        with anyio.CancelScope(shield=True):
            await self._save(locked=True)
        log.info("access token renewed")
        return pair.access_token

    async def _flush(self) -> None:
        """Retry the save of a renewed pair that could not be saved before."""
        if self._pending is not None:
            with anyio.CancelScope(shield=True):
                await self._save(locked=False)

    async def _save(self, *, locked: bool) -> None:
        """Save the pending pair; on failure it stays pending (and live), and the first failure is told loudly."""
        pending = self._pending
        assert pending is not None
        try:
            done = await anyio.to_thread.run_sync(self._store, pending, locked)
        except OSError as exc:
            if not self._warned_save:
                self._warned_save = True
                log.warning(
                    "Could not save the renewed OAuth tokens to %s (B24_TOKEN_FILE): %s. This process keeps them in "
                    "memory and goes on working, and retries the save at each call; until it succeeds, other "
                    "b24-mcp processes and the next start cannot renew the token. Free space on its disk or make "
                    "the file and its directory writable.",
                    self.token_file,
                    _why(exc),
                )
            return
        if not done:
            return  # another process holds the lock: next time
        if self._pending is pending:
            self._pending = None
        if self._warned_save:
            self._warned_save = False
            log.info("saved the renewed OAuth tokens to %s at last", self.token_file)

    def _store(self, pending: _Pending, locked: bool) -> bool:
        """Write the pending pair (in a worker thread); False if another process holds the lock."""
        if locked:
            self._write(pending.seed, pending.pair)
            return True
        from filelock import FileLock, Timeout

        lock = FileLock(self._lock_file, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        except OSError:
            pass  # no lock to be had: the directory is likely read-only, and the write below says so
        try:
            saved = self._read()
            if saved is not None and saved.pair == pending.pair:
                return True
            if (
                saved is not None
                and saved.pair != pending.replaces
                and fingerprint(saved.pair.refresh_token) not in self._spent
            ):
                # Another process saved a pair since: that one is the shared one now; ours lives on in memory only.
                log.info("not saving the renewed OAuth tokens: %s was updated by another process", self.token_file)
                return True
            self._write(pending.seed, pending.pair)
            return True
        finally:
            if lock.is_locked:
                lock.release()

    @asynccontextmanager
    async def _file_lock(self, deadline: float) -> AsyncIterator[None]:
        """Hold the token file's lock across processes, or go on without it (warned) if it cannot be made."""
        from filelock import BaseFileLock, FileLock, Timeout

        lock: BaseFileLock | None = None
        try:
            self.token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = FileLock(self._lock_file, thread_local=False)
        except OSError as exc:
            self._no_lock(exc)
        try:
            if lock is not None:
                # Polled in a worker thread for no longer than the call has left, so the thread always returns.
                left = max(0.0, deadline - time.monotonic())
                try:
                    await anyio.to_thread.run_sync(
                        functools.partial(lock.acquire, timeout=left, poll_interval=LOCK_POLL)
                    )
                except Timeout:
                    raise self._late(
                        f"another b24-mcp process sharing B24_TOKEN_FILE is renewing it, or is hung, and holds the "
                        f"lock {self._lock_file}",
                        "Wait a moment and try again; if a b24-mcp process is hung, end it. If none is running, "
                        "nothing holds the lock: it is the operating system's, held on the open file and released "
                        "when its process ends, whether or not the file exists, so leave the file where it is.",
                    ) from None
                except OSError as exc:
                    self._no_lock(exc)
                else:
                    self._warned_lock = False
            yield
        finally:
            if lock is not None and lock.is_locked:
                lock.release()

    def _no_lock(self, exc: OSError) -> None:
        if not self._warned_lock:
            self._warned_lock = True
            log.warning(
                "Cannot lock %s (%s): renewing the OAuth token without the lock that keeps b24-mcp processes "
                "sharing B24_TOKEN_FILE from renewing it at the same time. Make its directory writable.",
                self._lock_file,
                _why(exc),
            )

    @contextmanager
    def _bounded(self, deadline: float, why: str) -> Iterator[None]:
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                yield
        except TimeoutError:
            raise self._late(why) from None

    def _late(self, why: str, advice: str = "") -> AuthError:
        return late_error(self._token_host, why, advice)

    async def _request(self, refresh_token: str, deadline: float) -> TokenPair:
        return await request_pair(
            self._http, self._token_url, self._client_id, self._client_secret, refresh_token, deadline
        )

    def _read(self) -> _Saved | None:
        try:
            data = json.loads(self.token_file.read_text())
            pair = TokenPair(
                str(data["access_token"]),
                str(data["refresh_token"]),
                data.get("expires_at"),
                float(data.get("obtained_at", 0.0)),
            )
            saved = _Saved(str(data.get("seed", "")), pair)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = _why(exc) if isinstance(exc, OSError) else "it does not hold a b24-mcp token pair"
            if self._warned_read != reason:
                self._warned_read = reason
                # Kept as it is: it may be the only copy of a live pair. The next successful renewal replaces it.
                log.warning(
                    "B24_TOKEN_FILE %s cannot be read (%s). It is left as it is, and the tokens in B24_ACCESS_TOKEN "
                    "and B24_REFRESH_TOKEN are used meanwhile (the next renewal overwrites the file). If it may hold "
                    "the only working pair, make it readable now; if Bitrix24 rejects the environment's tokens, "
                    "re-authorise the application.",
                    self.token_file,
                    reason,
                )
            return None
        self._warned_read = None
        return saved

    def _write(self, seed: str, pair: TokenPair) -> None:
        """Atomically: a crash leaves either the old file or the new one, never half of either."""
        directory = self.token_file.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = {
            "seed": seed,
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_at": pair.expires_at,
            "obtained_at": pair.obtained_at,
        }
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.token_file.name}.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(payload, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.token_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if os.name == "posix":  # make the rename itself durable
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


LATE_ADVICE = "Try again; if the OAuth server is slow, raise B24_TIMEOUT."


def late_error(token_host: str, why: str, advice: str = "") -> AuthError:
    return AuthError(
        f"The OAuth access token could not be renewed with the OAuth server {token_host} within the "
        f"call's time limit ({CALL_BUDGET} x B24_TIMEOUT): {why}. {advice or LATE_ADVICE}"
    )


async def request_pair(
    http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str, refresh_token: str, deadline: float
) -> TokenPair:
    """One refresh at the OAuth server, by `deadline`: the new pair, or an AuthError saying what to do.

    Shared by the token-file session here and the Redis-backed one (`redis_state`).
    """
    form = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    token_host = urlsplit(token_url).netloc
    where = f"the OAuth server {token_host}"
    from pydantic_core import from_json

    from .wire import exchange, redirect_error

    try:
        with anyio.fail_after(max(0.0, deadline - time.monotonic())):
            # Bounded like every answer b24-mcp reads; a token answer is a few hundred bytes.
            reply = await exchange(http, token_url, host=token_host, data=form, limit=TOKEN_ANSWER_MAX)
    except TimeoutError:
        raise late_error(token_host, "the OAuth server did not answer in time") from None
    except B24Error as err:  # wire's words name the host and the cause (unreachable, too large, corrupt, ...)
        reached = not (isinstance(err, UpstreamError) and err.retryable)
        raise AuthError(
            f"Renewing the access token failed: {err}"
            if reached
            else f"Could not reach {where} to renew the access token: {err} Try again."
        ) from None
    if reply.location is not None:
        raise AuthError(str(redirect_error(token_host, reply.status, reply.location, "B24_OAUTH_SERVER")))
    try:
        data: Any = from_json(reply.body, allow_inf_nan=False)  # pydantic's parser: nesting bounded, no NaN
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AuthError(
            f"{where} answered HTTP {reply.status} with something other than a JSON object while renewing "
            "the access token; try again later."
        )
    code = data.get("error")
    if code == "invalid_grant":
        raise AuthError(
            "The OAuth refresh token is no longer valid (invalid_grant): re-authorise the application in "
            "Bitrix24 (open or reinstall it), then put the new tokens in B24_ACCESS_TOKEN and "
            "B24_REFRESH_TOKEN. The saved token pair was left as it was.",
            code="invalid_grant",
        )
    if code == "invalid_client":
        raise AuthError(
            "Bitrix24 rejected the application's credentials (invalid_client): check B24_CLIENT_ID and "
            "B24_CLIENT_SECRET against the application's settings.",
            code="invalid_client",
        )
    if code:
        shown = clean_code(code) or "(an unreadable code)"
        said = data.get("error_description")
        description = clean_text(said, 200) if isinstance(said, str) else ""
        raise AuthError(f"{where} refused to renew the access token: {shown} {description}".strip(), code=shown)
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
        raise AuthError(f"{where} answered without a new token pair (HTTP {reply.status}).")
    now = time.time()
    expires = data.get("expires")
    if not isinstance(expires, (int, float)):
        expires_in = data.get("expires_in")
        expires = now + expires_in if isinstance(expires_in, (int, float)) else None
    return TokenPair(access, refresh, float(expires) if expires is not None else None, now)


def _why(exc: BaseException) -> str:
    """An OS error in words, without its filename (the caller names the file)."""
    return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__


def session_for(settings: Settings, http: httpx.AsyncClient) -> OAuthSession:
    """The session for the configured application, seeded from the environment."""
    from .settings import OAuthConfig

    auth = settings.auth
    assert isinstance(auth, OAuthConfig)
    return OAuthSession(
        http=http,
        token_url=auth.token_url,
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        seed=TokenPair(auth.access_token, auth.refresh_token),
        token_file=auth.token_file or default_token_file(auth.host, auth.client_id),
    )

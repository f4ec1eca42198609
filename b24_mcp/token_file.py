"""The token file: the `oauth.PairStore` that b24-mcp processes of one application on one machine share.

Several editor windows each run their own b24-mcp, so the file is the shared pair: written atomically (temp file,
fsync, rename; mode 0600), guarded across processes by an OS lock on `{file}.lock` (0600, so no other user can hold
it), and refused at start-up where another user could swap it (`check_token_path`, ssh's rule for keys). A file
that cannot be read is left as it is (it may hold the only live pair) and reads as absent.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .errors import ConfigError
from .oauth import LockBusy, SaveFailed, Stored, TokenPair, fingerprint

if TYPE_CHECKING:
    from filelock import BaseFileLock

log = logging.getLogger("b24_mcp.oauth")
LOCK_POLL = 0.05  # seconds between two tries of the token file's lock


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


class TokenFile:
    """The pair in a JSON file (B24_TOKEN_FILE), its renewals single across processes by an OS file lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_file = lock_file_of(path)
        # Each trouble is told once, until it clears.
        self._warned_lock = False
        self._warned_read: str | None = None

    async def first(self, seed: Stored) -> Stored | None:
        return self._read()

    async def read(self, deadline: float) -> Stored | None:
        return await anyio.to_thread.run_sync(self._read)

    @asynccontextmanager
    async def lock(self, deadline: float) -> AsyncIterator[float]:
        """Hold the file's lock, or go on without it (warned) if it cannot be made; it never expires."""
        lock: BaseFileLock | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = self._file_lock()
        except OSError as exc:
            self._no_lock(exc)
        try:
            if lock is not None:
                await self._acquire(lock, deadline)
            yield float("inf")
        finally:
            if lock is not None and lock.is_locked:
                lock.release()

    def _file_lock(self) -> BaseFileLock:
        from filelock import FileLock

        return FileLock(self.lock_file, mode=0o600, thread_local=False)

    async def _acquire(self, lock: BaseFileLock, deadline: float) -> None:
        from filelock import Timeout

        # Polled in a worker thread for no longer than the call has left, so the thread always returns.
        left = max(0.0, deadline - time.monotonic())
        try:
            await anyio.to_thread.run_sync(functools.partial(lock.acquire, timeout=left, poll_interval=LOCK_POLL))
        except Timeout:
            raise LockBusy(
                f"another process sharing B24_TOKEN_FILE is renewing it, or is hung, and holds the lock "
                f"{self.lock_file} ({self._owner()})",
                "Wait a moment and try again; if a b24-mcp process is hung, end it. If none is running, nothing "
                "holds the lock: it is the operating system's, held on the open file and released when its process "
                "ends, whether or not the file exists, so leave the file where it is.",
            ) from None
        except OSError as exc:
            self._no_lock(exc)
        else:
            self._warned_lock = False
            self._private()

    def _owner(self) -> str:
        """Whose lock file it is: anyone who can open it can hold the lock."""
        try:
            st = self.lock_file.stat()
        except OSError:
            return "its owner is unknown"
        getuid = getattr(os, "getuid", None)
        whose = "yours" if getuid is not None and st.st_uid == getuid() else f"owned by uid {st.st_uid}"
        return f"the file is {whose}, mode {stat.S_IMODE(st.st_mode):04o}"

    def _private(self) -> None:
        """A lock file made before b24-mcp made them 0600 is made so: others could open it, and hold the lock."""
        try:
            if stat.S_IMODE(self.lock_file.stat().st_mode) & 0o077:
                os.chmod(self.lock_file, 0o600)
        except OSError:
            pass  # not ours to change: check_token_path refuses another user's lock at start-up

    def _no_lock(self, exc: OSError) -> None:
        if not self._warned_lock:
            self._warned_lock = True
            log.warning(
                "Cannot lock %s (%s): renewing the OAuth token without the lock that keeps b24-mcp processes "
                "sharing B24_TOKEN_FILE from renewing it at the same time. Make its directory writable.",
                self.lock_file,
                _why(exc),
            )

    async def write(self, new: Stored, replaces: str, *, locked: bool) -> bool | None:
        return await anyio.to_thread.run_sync(self._store, new, replaces, locked)

    def _store(self, new: Stored, replaces: str, locked: bool) -> bool | None:
        """In a worker thread: compare-and-set under the lock (taken without waiting unless `locked`)."""
        from filelock import Timeout

        lock = None
        if not locked:
            try:
                lock = self._file_lock()
                lock.acquire(timeout=0)
            except Timeout:
                return None
            except OSError:
                lock = None  # no lock to be had: the directory is likely read-only, and the write below says so
        try:
            saved = self._read()
            if saved is not None and saved.pair == new.pair:
                return True
            if saved is not None and saved.pair.refresh_token != replaces:
                return False
            try:
                self._write(new)
            except OSError as exc:
                raise SaveFailed(
                    f"Could not save the renewed OAuth tokens to {self.path} (B24_TOKEN_FILE): {_why(exc)}. Free "
                    "space on its disk or make the file and its directory writable."
                ) from None
            return True
        finally:
            if lock is not None and lock.is_locked:
                lock.release()

    def _read(self) -> Stored | None:
        try:
            data = json.loads(self.path.read_text())
            access, refresh = data["access_token"], data["refresh_token"]
            if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
                raise ValueError("no tokens")
            expires = data.get("expires_at")
            pair = TokenPair(
                access,
                refresh,
                float(expires) if isinstance(expires, (int, float)) else None,
                float(data.get("obtained_at", 0.0)),
            )
            saved = Stored(str(data.get("seed", "")), pair)
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
                    self.path,
                    reason,
                )
            return None
        self._warned_read = None
        return saved

    def _write(self, new: Stored) -> None:
        """Atomically: a crash leaves either the old file or the new one, never half of either."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        pair = new.pair
        payload = {
            "seed": new.seed,
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_at": pair.expires_at,
            "obtained_at": pair.obtained_at,
        }
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(payload, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if os.name == "posix":  # make the rename itself durable
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _why(exc: BaseException) -> str:
    """An OS error in words, without its filename (the caller names the file)."""
    return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__

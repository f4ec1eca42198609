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
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..paths import lock_file_of, os_reason
from .oauth import LockBusy, SaveFailed, Stored
from .token_server import TokenPair

if TYPE_CHECKING:
    from filelock import BaseFileLock

log = logging.getLogger("b24_mcp.oauth")
LOCK_POLL = 0.05  # seconds between two tries of the token file's lock


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
                os_reason(exc),
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
                    f"Could not save the renewed OAuth tokens to {self.path} (B24_TOKEN_FILE): {os_reason(exc)}. Free "
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
            reason = os_reason(exc) if isinstance(exc, OSError) else "it does not hold a b24-mcp token pair"
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

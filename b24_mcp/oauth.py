"""OAuth for Bitrix24 applications: the access token to send, and one refresh per expiry across processes.

Bitrix24 rotates refresh tokens: every refresh returns a new pair and kills the old refresh token. A pair that
is received and then lost (a crash, or two processes refreshing at once, the second spending a token the first
just killed) locks the user out until they re-authorise by hand. And several editor windows each run their own
b24-mcp for the same app, so two processes refreshing at once is the normal case. Hence:

- the pair lives in a token file that every process of the app shares; the environment only seeds it;
- a refresh happens only after the portal said `expired_token`, never on a timer;
- in a process, concurrent callers wait for one refresh (an anyio lock); across processes, a file lock is
  taken and the file re-read, so a pair another process already got is reused instead of spending a dead token;
- the new pair is written atomically (temp file, fsync, rename; mode 0600) before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx

from .errors import AuthError
from .logs import redact

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("b24_mcp.oauth")
FILE_VERSION = 1


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float | None = None
    obtained_at: float = 0.0

    def __repr__(self) -> str:  # reprs land in logs and tracebacks
        return f"TokenPair(tokens=***, expires_at={self.expires_at}, obtained_at={self.obtained_at})"

    __str__ = __repr__


def fingerprint(token: str) -> str:
    """Identifies a token without revealing it: which seed a saved pair descends from."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def default_token_file(portal_host: str, client_id: str) -> Path:
    """One file per portal and application, in the user's data directory."""
    import platformdirs  # only OAuth users pay for it, and only on first use

    safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", portal_host)
    return platformdirs.user_data_path("b24-mcp") / f"oauth-{safe_host}-{fingerprint(client_id)[:12]}.json"


@dataclass(frozen=True)
class _Saved:
    seed: str
    pair: TokenPair


class OAuthSession:
    """The current token pair of one application on one portal."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        seed: TokenPair,
        token_file: Path,
        lock_timeout: float = 30.0,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._token_host = urlsplit(token_url).netloc
        self._client_id = client_id
        self._client_secret = client_secret
        self._seed = seed
        self._seed_fp = fingerprint(seed.refresh_token)
        self.token_file = token_file
        self._lock_timeout = lock_timeout
        self._current: TokenPair | None = None
        self._lock = anyio.Lock()
        # Test hook: called with the new pair after it is received and before it is saved (a simulated crash).
        self._after_receive: Callable[[TokenPair], None] | None = None

    async def access_token(self) -> str:
        return self._pair().access_token

    def _pair(self) -> TokenPair:
        if self._current is not None:
            return self._current
        saved = self._read()
        # The saved pair descends from this seed: it is newer. A different seed means the user
        # re-authorised and pasted fresh tokens, which then win.
        return self._use(saved.pair if saved is not None and saved.seed == self._seed_fp else self._seed)

    def _use(self, pair: TokenPair) -> TokenPair:
        """Make `pair` the live one; its tokens join the redactor, so no log or error can quote them."""
        redact.add([pair.access_token, pair.refresh_token])
        self._current = pair
        return pair

    async def refresh(self, stale_access_token: str) -> str:
        """The token to retry with, after `stale_access_token` was refused as expired."""
        async with self._lock:
            current = self._pair()
            if current.access_token != stale_access_token:
                return current.access_token  # a concurrent caller in this process already refreshed
            from filelock import FileLock, Timeout

            self.token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = FileLock(f"{self.token_file}.lock", thread_local=False)
            try:
                await anyio.to_thread.run_sync(lambda: lock.acquire(timeout=self._lock_timeout))
            except Timeout:
                raise AuthError(
                    f"Another b24-mcp process has held the token file lock for {self._lock_timeout:g} s; "
                    f"if none is running, delete {self.token_file}.lock (B24_TOKEN_FILE)."
                ) from None
            try:
                saved = await anyio.to_thread.run_sync(self._read)
                if (
                    saved is not None
                    and saved.pair.access_token != stale_access_token
                    and (saved.seed == self._seed_fp or current is not self._seed)
                ):
                    # Another process refreshed while we waited: its pair is the live one, ours is dead. (A file
                    # from another seed is ignored while we still hold our own fresher seed from the environment.)
                    log.info("reusing the token pair another b24-mcp process refreshed")
                    return self._use(saved.pair).access_token
                pair = await self._request(current.refresh_token)
                if self._after_receive is not None:
                    self._after_receive(pair)
                seed = saved.seed if saved is not None and saved.pair == current else self._seed_fp
                await anyio.to_thread.run_sync(self._write, seed, pair)
                log.info("access token renewed")
                return self._use(pair).access_token
            finally:
                lock.release()

    async def _request(self, refresh_token: str) -> TokenPair:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": refresh_token,
        }
        where = f"the OAuth server {self._token_host}"
        try:
            response = await self._http.post(self._token_url, data=form)
        except httpx.HTTPError as exc:
            raise AuthError(
                f"Could not reach {where} to renew the access token ({type(exc).__name__}); try again."
            ) from None
        try:
            data: Any = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AuthError(
                f"{where} answered HTTP {response.status_code} with something other than JSON while renewing "
                "the access token; try again later."
            )
        code = data.get("error")
        if code == "invalid_grant":
            raise AuthError(
                "The OAuth refresh token is no longer valid (invalid_grant): re-authorise the application in "
                "Bitrix24 (open or reinstall it), then put the new tokens in B24_ACCESS_TOKEN and "
                "B24_REFRESH_TOKEN. The saved token file was left as it was.",
                code="invalid_grant",
            )
        if code == "invalid_client":
            raise AuthError(
                "Bitrix24 rejected the application's credentials (invalid_client): check B24_CLIENT_ID and "
                "B24_CLIENT_SECRET against the application's settings.",
                code="invalid_client",
            )
        if code:
            description = " ".join(str(data.get("error_description", "")).split())[:200]
            raise AuthError(f"{where} refused to renew the access token: {code} {description}".strip(), code=str(code))
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
            raise AuthError(f"{where} answered without a new token pair (HTTP {response.status_code}).")
        now = time.time()
        expires = data.get("expires")
        if not isinstance(expires, (int, float)):
            expires_in = data.get("expires_in")
            expires = now + expires_in if isinstance(expires_in, (int, float)) else None
        return TokenPair(access, refresh, float(expires) if expires is not None else None, now)

    def _read(self) -> _Saved | None:
        try:
            data = json.loads(self.token_file.read_text())
            pair = TokenPair(
                str(data["access_token"]),
                str(data["refresh_token"]),
                data.get("expires_at"),
                float(data.get("obtained_at", 0.0)),
            )
            return _Saved(str(data.get("seed", "")), pair)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Kept as it is: it may be the only copy of a live pair. The next successful refresh replaces it.
            log.warning("ignoring unreadable token file %s (%s)", self.token_file, type(exc).__name__)
            return None

    def _write(self, seed: str, pair: TokenPair) -> None:
        """Atomically: a crash leaves either the old file or the new one, never half of either."""
        directory = self.token_file.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = {
            "version": FILE_VERSION,
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

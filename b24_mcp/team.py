"""The team deployment's settings: who may call the HTTP endpoint, and where replicas share their state.

Stdlib only, since the desktop default loads it with the settings: it must bring nothing new with it. Each
problem is a one-line `ConfigError` naming the variable, never echoing a secret. The variables are described
in docs/team.md; what uses them is `http_auth` (bearer tokens) and `redis_state` (the shared state).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO
from urllib.parse import unquote, urlsplit

from .errors import ConfigError, Problems
from .forms import check_base_url, is_loopback

TOKENS_FILE = "B24_HTTP_TOKENS_FILE"
JWKS_URL = "B24_HTTP_JWKS_URL"
ISSUER = "B24_HTTP_ISSUER"
AUDIENCE = "B24_HTTP_AUDIENCE"
RESOURCE_URL = "B24_HTTP_RESOURCE_URL"
REDIS_URL = "B24_REDIS_URL"
JWT_VARS = (JWKS_URL, ISSUER, AUDIENCE)

_DIGEST = re.compile(r"[0-9a-f]{64}")
TOKENS_FILE_MAX = 1 << 20  # a megabyte holds ~15,000 digests: far more than a team


@dataclass(frozen=True)
class RedisConfig:
    url: str = field(repr=False)  # may hold a password
    where: str  # host:port/db, safe to show
    password: str | None = field(default=None, repr=False)
    quoted: str | None = field(default=None, repr=False)  # the password as the URL spells it (%-encoded)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The password in both spellings: the URL may be quoted as it was written."""
        return tuple(s for s in (self.password, self.quoted) if s)


@dataclass(frozen=True)
class JwtConfig:
    jwks_url: str
    issuer: str
    audience: str


@dataclass(frozen=True)
class HttpAuthConfig:
    """How bearer tokens are checked on Streamable HTTP: a tokens file, JWTs, or both (either one admits)."""

    tokens_file: Path | None = None
    jwt: JwtConfig | None = None
    resource_url: str | None = None  # None: derived from the bind (or the first --allowed-host)


@dataclass(frozen=True)
class TeamConfig:
    redis: RedisConfig | None = None
    http_auth: HttpAuthConfig | None = None


def load(env: Mapping[str, str]) -> TeamConfig | None:
    """Every team variable checked, every problem reported at once (None when none is set); from `settings.load`."""
    problems = Problems()
    http_auth = problems.take(lambda: load_http_auth(env))
    raw = env.get(REDIS_URL, "").strip()
    redis = problems.take(lambda: parse_redis_url(raw)) if raw else None
    problems.raise_any()
    if redis is None and http_auth is None:
        return None
    return TeamConfig(redis=redis, http_auth=http_auth)


def load_http_auth(env: Mapping[str, str]) -> HttpAuthConfig | None:
    """The HTTP authentication variables; None when neither a tokens file nor JWTs are configured."""

    def get(name: str) -> str:
        return env.get(name, "").strip()

    problems = Problems()
    tokens_file = Path(get(TOKENS_FILE)).expanduser() if get(TOKENS_FILE) else None
    if tokens_file is not None:
        problems.take(lambda: read_digests(tokens_file))  # refused now, not at the first request
    jwt_set = [name for name in JWT_VARS if get(name)]
    jwt = None
    if jwt_set:
        missing = [name for name in JWT_VARS if not get(name)]
        if missing:
            problems.add(
                f"JWT authentication needs {', '.join(JWT_VARS)}; missing: {', '.join(missing)} "
                f"(or unset {', '.join(jwt_set)} and use {TOKENS_FILE})"
            )
        jwks = problems.take(
            lambda: _http_url(JWKS_URL, get(JWKS_URL), "https://login.example.com/.well-known/jwks.json")
        )
        if jwks is not None and not missing:
            jwt = JwtConfig(jwks_url=jwks, issuer=get(ISSUER), audience=get(AUDIENCE))
    resource = None
    if get(RESOURCE_URL):
        resource = problems.take(lambda: _http_url(RESOURCE_URL, get(RESOURCE_URL), "https://mcp.example.com/mcp"))
        if tokens_file is None and not jwt_set:
            problems.add(f"{RESOURCE_URL} is set but no authentication is: set {TOKENS_FILE} or {JWKS_URL}")
    problems.raise_any()
    if tokens_file is None and jwt is None:
        return None
    return HttpAuthConfig(tokens_file=tokens_file, jwt=jwt, resource_url=resource)


def require_auth(bind_host: str, no_auth: bool, env: Mapping[str, str]) -> HttpAuthConfig | None:
    """The HTTP authentication to serve with; ConfigError when serving would be unsafe or contradictory."""
    config = load_http_auth(env)
    if no_auth:
        if config is not None:
            raise ConfigError(f"--no-auth contradicts {TOKENS_FILE} / {JWKS_URL}: unset them, or drop --no-auth")
        return None
    if config is None and not is_loopback(bind_host):
        raise ConfigError(
            f"--host {bind_host} is not a loopback address and no authentication is configured: set {TOKENS_FILE} "
            f"(`b24-mcp token` makes a token) or {', '.join(JWT_VARS)}; or pass --no-auth if a proxy in front "
            "authenticates every request"
        )
    return config


def read_digests(path: Path) -> frozenset[str]:
    """The accepted tokens' digests; a bad line is refused by number, never quoted (it may be a raw token)."""
    try:
        with path.open("rb") as file:
            data = file.read(TOKENS_FILE_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"{TOKENS_FILE} {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > TOKENS_FILE_MAX:
        raise ConfigError(f"{TOKENS_FILE} {path} is larger than {TOKENS_FILE_MAX} bytes; expected one digest a line")
    digests: set[str] = set()
    for number, raw_line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _DIGEST.fullmatch(line):
            raise ConfigError(
                f"{TOKENS_FILE} {path} line {number} is not a SHA-256 hex digest (64 hex digits); put the line "
                "`b24-mcp token` prints there, never the token itself"
            )
        digests.add(line)
    return frozenset(digests)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    """A new random bearer token and the tokens-file line that admits it."""
    token = secrets.token_urlsafe(32)
    return token, f"{digest(token)}  # made {datetime.now(timezone.utc).strftime('%Y-%m-%d')}"


def print_new_token(out: TextIO) -> None:
    """`b24-mcp token`: a new random bearer token, and the line that admits it."""
    token, line = _new_token()
    out.write(
        f"token: {token}\n"
        f"Give the token to its user (header `Authorization: Bearer {token}`) and add this line to the file named "
        f"by {TOKENS_FILE} (it holds only digests; delete the line to revoke the token):\n"
        f"{line}\n"
    )


def append_new_token(path: str) -> str:
    """`b24-mcp token --append FILE`: a new token, its line added to FILE (created 0600 if missing)."""
    token, line = _new_token()
    try:
        fd = os.open(Path(path).expanduser(), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as file:
            end = file.seek(0, os.SEEK_END)
            if end and (file.seek(end - 1), file.read(1))[1] != b"\n":
                line = "\n" + line  # a last line without its newline (written by hand) stays whole
            file.write(line.encode() + b"\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot add the token's line to {path} ({exc.strerror or type(exc).__name__}); check the path"
        ) from None
    return token


def parse_redis_url(raw: str) -> RedisConfig:
    form = "redis://host:6379/0 (or redis://:password@host:6379/0, rediss:// for TLS)"
    try:
        parts = urlsplit(raw)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"{REDIS_URL} is not a valid URL; expected {form}") from None
    if parts.scheme not in ("redis", "rediss") or not host:
        raise ConfigError(f"{REDIS_URL} must be a redis:// or rediss:// URL with a host; expected {form}")
    db = parts.path.strip("/") or "0"
    if not db.isdigit() or int(db) > 1_000_000 or parts.query or parts.fragment:
        raise ConfigError(f"{REDIS_URL} must end with a database number and nothing else; expected {form}")
    password = unquote(parts.password) if parts.password else None
    shown = f"[{host}]" if ":" in host else host
    return RedisConfig(url=raw, where=f"{shown}:{port or 6379}/{int(db)}", password=password, quoted=parts.password)


def _http_url(var: str, raw: str, example: str) -> str:
    check_base_url(var, raw, f"e.g. {example}", query=True)  # a JWKS URL may carry a query (some providers')
    return raw

"""Bearer tokens on Streamable HTTP: the SDK's `TokenVerifier` for a tokens file, for JWTs, or for both.

The SDK does the protocol (the 401 with `WWW-Authenticate`, the RFC 9728 protected-resource metadata); this
module only decides whether a token is good. The token is never logged or kept, and never reaches Bitrix24:
the REST client signs with its own credentials and never sees the request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .errors import ConfigError
from .team import HttpAuthConfig, JwtConfig, digest, read_digests

if TYPE_CHECKING:
    import httpx
    from mcp.server.auth.provider import AccessToken, TokenVerifier
    from mcp.server.auth.settings import AuthSettings

log = logging.getLogger("b24_mcp.http_auth")

JWKS_TTL = 600.0  # seconds a fetched key set is trusted before it is fetched again
JWKS_MIN_REFETCH = 30.0  # an unknown kid triggers a fetch at most this often
JWKS_TIMEOUT = 5.0
JWKS_MAX_BYTES = 256 * 1024
LEEWAY = 30  # seconds of clock skew allowed on exp/nbf/iat
# Asymmetric only: a JWKS holds public keys, and HS256 with a public key as the secret is the classic forgery.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _access(kind: str, token: str, client_id: str, **extra: Any) -> AccessToken:
    from mcp.server.auth.provider import AccessToken

    # `token` is the fingerprint, not the token: the SDK keeps this object for the whole request.
    return AccessToken(token=f"{kind}:{digest(token)[:16]}", client_id=client_id, **extra)


@dataclass
class _Stamp:
    mtime_ns: int
    size: int
    inode: int


class TokenFileVerifier:
    """Accepts the tokens whose SHA-256 digests are listed in `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digests: frozenset[str] = read_digests(path)
        self._stamp = self._stat()
        self._broken = False

    def _stat(self) -> _Stamp | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        """Re-read the file if it changed (a stat per request). A file that turns bad admits no one until it is
        fixed: keeping the old set would keep a revoked token alive."""
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._digests = read_digests(self.path)
        except ConfigError as err:
            self._digests = frozenset()
            if not self._broken:
                log.error("%s; no token from it is accepted until it is fixed", err)
            self._broken = True
            return
        if self._broken:
            log.warning("%s is readable again: its tokens are accepted", self.path)
        self._broken = False

    def accepts(self, token: str) -> bool:
        """Whether the token's digest is listed: compared with every one in constant time, no early exit."""
        self._refresh()
        presented = digest(token).encode()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(known.encode(), presented)
        return found

    async def verify_token(self, token: str) -> AccessToken | None:
        if not self.accepts(token):
            return None
        return _access("file", token, client_id=f"token-{digest(token)[:8]}", scopes=[])


class JwtVerifier:
    """Accepts JWTs signed by a key in the identity provider's JWKS, for our audience, from our issuer, unexpired."""

    def __init__(self, config: JwtConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._keys: dict[str, dict[str, Any]] = {}  # kid -> the JWK as published ("" for a key without kid)
        self._made: dict[tuple[str, str], Any] = {}  # (kid, alg) -> PyJWK
        self._fetched_at = -float("inf")
        self._tried_at = -float("inf")
        self._fetching: asyncio.Task[None] | None = None
        self._outage = False  # told once, until a fetch succeeds

    async def aclose(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def verify_token(self, token: str) -> AccessToken | None:
        import jwt

        if token.count(".") != 2:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or (kid is not None and not isinstance(kid, str)):
            log.info("bearer JWT refused: algorithm %r is not accepted", alg if isinstance(alg, str) else "?")
            return None
        key = await self._key(kid or "", alg)
        if key is None:
            log.info("bearer JWT refused: no %s key %r in %s", alg, (kid or "")[:64], self.config.jwks_url)
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            log.info("bearer JWT refused: %s", type(exc).__name__)
            return None
        scope = claims.get("scope")
        subject = claims.get("sub")
        client = claims.get("azp") or claims.get("client_id") or subject or "jwt"
        return _access(
            "jwt",
            token,
            client_id=str(client),
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]) + LEEWAY,  # the SDK refuses past expires_at: the leeway holds there too
            subject=str(subject) if subject is not None else None,
            resource=self.config.audience,
            claims={"iss": claims.get("iss")},
        )

    async def _key(self, kid: str, alg: str) -> Any:
        """The key for `kid` and `alg`. A stale set keeps serving its keys while one fetch runs in the background;
        a key not in the set waits for the fetch under way, or starts one at most once per JWKS_MIN_REFETCH."""
        now = time.monotonic()
        may_fetch = now - self._tried_at > JWKS_MIN_REFETCH
        if kid in self._keys:
            if now - self._fetched_at > JWKS_TTL and may_fetch and not self._busy():
                self._start_fetch()
            return self._made_key(kid, alg)
        if not self._busy() and may_fetch:
            self._start_fetch()
        if self._busy():
            assert self._fetching is not None
            await asyncio.wait([self._fetching], timeout=JWKS_TIMEOUT)
        return self._made_key(kid, alg) if kid in self._keys else None

    def _busy(self) -> bool:
        return self._fetching is not None and not self._fetching.done()

    def _start_fetch(self) -> None:
        self._tried_at = time.monotonic()
        self._fetching = asyncio.get_running_loop().create_task(self._fetch())

    def _made_key(self, kid: str, alg: str) -> Any:
        """The JWK as a key for `alg`: one published without `alg` serves any algorithm of its type (PS256 or
        RS384 on an RSA key, say); one with `alg` serves that algorithm only."""
        import jwt

        made = self._made.get((kid, alg))
        if made is None:
            data = self._keys[kid]
            if data.get("alg") not in (None, alg):
                return None
            try:
                made = self._made[(kid, alg)] = jwt.PyJWK(data, algorithm=alg)
            except jwt.PyJWTError:
                return None
        return made

    async def _fetch(self) -> None:
        """Fetch the key set; on failure the keys already known stay in use (a provider hiccup locks no one out)."""
        import httpx
        import jwt
        from pydantic_core import from_json

        from .bitrix24.network import trust

        if self._http is None:  # trusting what the portal's client trusts, with the same cached TLS context
            self._http = httpx.AsyncClient(
                transport=self._transport, timeout=JWKS_TIMEOUT, follow_redirects=False, verify=trust()
            )
        try:
            with anyio.fail_after(JWKS_TIMEOUT):
                async with self._http.stream("GET", self.config.jwks_url) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > JWKS_MAX_BYTES:
                            raise ValueError(f"larger than {JWKS_MAX_BYTES} bytes")
                    if response.status_code != 200:
                        raise ValueError(f"HTTP {response.status_code}")
            data = from_json(body)  # nesting bounded: a 100k-deep document is a ValueError, not a RecursionError
            listed = data.get("keys") if isinstance(data, dict) else None
            if not isinstance(listed, list):
                raise ValueError("no list of keys")
            keys: dict[str, dict[str, Any]] = {}
            for entry in listed:
                if not isinstance(entry, dict) or entry.get("use") not in (None, "sig"):
                    continue
                kid = entry.get("kid")
                try:
                    jwt.PyJWK(entry, algorithm=entry.get("alg") or None)  # a key PyJWT can use at all
                except jwt.PyJWTError:
                    continue
                keys[kid if isinstance(kid, str) else ""] = entry
        except (TimeoutError, httpx.HTTPError, ValueError) as exc:
            if not self._outage:
                self._outage = True
                log.warning(
                    "cannot fetch the JWKS at %s (B24_HTTP_JWKS_URL): %s; %s. Tried again at most every %.0f s; "
                    "said once until it works again",
                    self.config.jwks_url,
                    str(exc)[:200] or type(exc).__name__,
                    "keeping the keys fetched before" if self._keys else "no JWT is accepted until it can be fetched",
                    JWKS_MIN_REFETCH,
                )
            return
        if self._outage:
            self._outage = False
            log.warning("fetched the JWKS at %s again", self.config.jwks_url)
        self._keys = keys
        self._made = {}
        self._fetched_at = time.monotonic()


class EitherVerifier:
    """A tokens file and JWTs together: a JWT-shaped token goes to the JWT check, any token to the file."""

    def __init__(self, file: TokenFileVerifier | None, jwt: JwtVerifier | None) -> None:
        self.file = file
        self.jwt = jwt

    async def verify_token(self, token: str) -> AccessToken | None:
        if self.file is not None and (found := await self.file.verify_token(token)) is not None:
            return found
        if self.jwt is not None:
            return await self.jwt.verify_token(token)
        return None


def resource_url(config: HttpAuthConfig, bind: str, port: int, allowed_hosts: list[str], path: str) -> str:
    """The endpoint's public URL: B24_HTTP_RESOURCE_URL, else https on the first --allowed-host, else the bind."""
    if config.resource_url:
        return config.resource_url
    if allowed_hosts:
        return f"https://{allowed_hosts[0]}{path}"
    return f"http://{bind}:{port}{path}"


def server_auth(config: HttpAuthConfig, resource: str) -> tuple[AuthSettings, TokenVerifier]:
    """The SDK's AuthSettings and our verifier, for `MCPServer(auth=..., token_verifier=...)`."""
    from urllib.parse import urlsplit

    from mcp.server.auth.settings import AuthSettings

    file = TokenFileVerifier(config.tokens_file) if config.tokens_file is not None else None
    jwt = JwtVerifier(config.jwt) if config.jwt is not None else None
    # The protected-resource metadata names an authorization server, so it is published only with JWTs (the
    # identity provider's issuer). A tokens file has none (`b24-mcp token` hands tokens out): metadata naming one
    # sent OAuth clients (the Inspector) into an interactive login that could only fail. The SDK's field is
    # required, so the resource's own origin fills it, unpublished.
    parts = urlsplit(resource)
    issuer = f"{parts.scheme}://{parts.netloc}"
    if config.jwt is not None and urlsplit(config.jwt.issuer).scheme in ("http", "https"):
        issuer = config.jwt.issuer
    settings = AuthSettings(
        issuer_url=issuer,  # type: ignore[arg-type]  # pydantic validates the str into AnyHttpUrl
        resource_server_url=resource if config.jwt is not None else None,  # type: ignore[arg-type]
        validate_token_resource=False,  # JwtVerifier checks `aud` itself; file tokens have no audience
    )
    return settings, EitherVerifier(file, jwt)

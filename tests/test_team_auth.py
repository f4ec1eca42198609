"""Bearer tokens on Streamable HTTP: the settings, the refusals, and the SDK's 401 answered by our verifiers.

Requests go to the real Starlette app the transport serves (the SDK's auth middleware, its protected-resource
metadata route, our TokenVerifier), in process through httpx's ASGI transport; the tool call behind it reaches
the loopback stand-in portal. JWTs are signed in the test with keys made by `cryptography`, and the JWKS is
served by a loopback HTTP server that counts its fetches.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from b24_mcp import cli, team, variables
from b24_mcp import settings as config
from b24_mcp.errors import ConfigError
from b24_mcp.http_auth import JWKS_MIN_REFETCH, JWKS_TTL, JwtVerifier, TokenFileVerifier
from b24_mcp.server import build_server
from b24_mcp.transport import http_app, server_auth, transport_security
from tests.portal import StandInPortal
from tests.values import HTTP_HEADERS, PROTOCOL_VERSION, webhook_vars

ISSUER = "https://login.example.com/"
AUDIENCE = "b24-mcp"
BASE = "http://127.0.0.1:8000"
METADATA = f"{BASE}/.well-known/oauth-protected-resource/mcp"
HEADERS = {**HTTP_HEADERS, "MCP-Protocol-Version": PROTOCOL_VERSION}
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "get_chat", "arguments": {"dialogId": "chat5"}},
}


# --- settings and refusals ----------------------------------------------------------------------------------------


def digest_file(tmp_path: Path, *tokens: str, extra: str = "") -> Path:
    path = tmp_path / "tokens"
    path.write_text("# team tokens\n\n" + "".join(f"{team.digest(t)}  # {i}\n" for i, t in enumerate(tokens)) + extra)
    return path


def test_token_command_prints_a_token_and_the_line_that_admits_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli.main(["token"])
    out = capsys.readouterr().out
    token = out.splitlines()[0].removeprefix("token: ")
    line = out.splitlines()[-1]
    assert len(token) >= 40 and line.startswith(team.digest(token) + "  # made ")
    path = tmp_path / "tokens"
    path.write_text(line + "\n")
    verifier = TokenFileVerifier(path)
    assert verifier.accepts(token) and not verifier.accepts(token + "x")
    assert token not in path.read_text()  # the file holds only its digest


def test_token_append_adds_its_line_to_the_file_and_prints_only_the_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`TOKEN=$(b24-mcp token --append FILE)`: no line to pick out of the output by hand."""
    path = tmp_path / "tokens"
    tokens: list[str] = []
    for _ in range(2):  # created, then appended to
        if tokens:
            path.write_text(path.read_text() + "# ops team")  # a last line without its newline
        cli.main(["token", "--append", str(path)])
        out, err = capsys.readouterr()
        (token,) = out.splitlines()
        tokens.append(token)
        assert f"added its digest to {path}" in err and token not in err
    verifier = TokenFileVerifier(path)
    assert all(verifier.accepts(t) for t in tokens) and not verifier.accepts(tokens[0] + "x")
    assert not any(t in path.read_text() for t in tokens) and len(path.read_text().splitlines()) == 3


def test_token_append_to_an_unwritable_place_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["token", "--append", str(tmp_path / "missing" / "tokens")])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""  # no token printed that no file admits
    assert err.startswith("b24-mcp: error: cannot add the token's line to ") and "Traceback" not in err


def test_tokens_file_lines(tmp_path: Path) -> None:
    good = team.digest("a")
    path = tmp_path / "tokens"
    for text, says in [
        ("s3cretRAWtoken\n", "line 1 is not a SHA-256 hex digest"),
        (f"# ok\n{good}\n{good[:-1]}\n", "line 3"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            team.read_digests(path)
        assert says in str(caught.value) and "s3cretRAWtoken" not in str(caught.value)
    path.write_text(f"\n# c\n  {good.upper()}   # alice\n")
    assert team.read_digests(path) == {good}
    with pytest.raises(ConfigError, match="cannot be read"):
        team.read_digests(tmp_path / "missing")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"B24_HTTP_JWKS_URL": "https://login.example.com/jwks"}, "missing: B24_HTTP_ISSUER, B24_HTTP_AUDIENCE"),
        (
            {"B24_HTTP_JWKS_URL": "http://login.example.com/jwks", "B24_HTTP_ISSUER": "x", "B24_HTTP_AUDIENCE": "y"},
            "must use https://",
        ),
        ({"B24_HTTP_RESOURCE_URL": "https://mcp.example.com/mcp"}, "no authentication is"),
        ({"B24_REDIS_URL": "http://127.0.0.1:6379/0"}, "redis:// or rediss://"),
        ({"B24_REDIS_URL": "redis://127.0.0.1:6379/zero"}, "database number"),
        ({"B24_REDIS_URL": "redis://:hunter2pass@127.0.0.1:port/0"}, "not a valid URL"),
    ],
)
def test_bad_team_settings_are_one_line_each(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(webhook_vars(**env))
    message = str(caught.value)
    assert says in message and "\n" not in message and "hunter2pass" not in message


def test_team_settings_load() -> None:
    assert config.load(webhook_vars()).team is None  # the desktop default: nothing of this
    settings = config.load(webhook_vars(B24_REDIS_URL="redis://:p%40ss@10.0.0.5:6380/2"))
    assert settings.team is not None and settings.team.redis is not None
    assert settings.team.redis.where == "10.0.0.5:6380/2" and settings.team.redis.password == "p@ss"
    assert "p@ss" not in repr(settings)


def test_non_loopback_without_auth_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in variables.TEAM_VARS:
        monkeypatch.delenv(name, raising=False)
    args = ["--demo", "--transport", "streamable-http", "--host", "0.0.0.0", "--allowed-host", "mcp.example.com"]
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "no authentication is configured" in line and "--no-auth" in line and "B24_HTTP_TOKENS_FILE" in line

    monkeypatch.setenv("B24_HTTP_TOKENS_FILE", str(digest_file(tmp_path, "t")))
    with pytest.raises(SystemExit) as exited:
        cli.main([*args, "--no-auth"])
    assert exited.value.code == 2
    assert "--no-auth contradicts" in capsys.readouterr().err
    assert team.require_auth("0.0.0.0", True, {}) is None  # said explicitly: a proxy in front authenticates
    assert team.require_auth("127.0.0.1", False, {}) is None  # the desktop default stays open on loopback


# --- the SDK's 401 and our verifiers, through the served app ------------------------------------------------------


@asynccontextmanager
async def served(portal: StandInPortal, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """The Streamable HTTP app `b24-mcp --transport streamable-http` serves, with auth from `env`."""
    auth = team.require_auth("127.0.0.1", False, env)
    server = build_server(
        config.load(webhook_vars(portal.webhook_url)), **server_auth(auth, host="127.0.0.1", port=8000)
    )
    app = http_app(server, "127.0.0.1", transport_security("127.0.0.1"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
    ):
        yield http


async def call(http: httpx.AsyncClient, token: str | None) -> httpx.Response:
    headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token is not None else {})}
    return await http.post("/mcp", json=CALL, headers=headers)


def assert_refused(response: httpx.Response, *, metadata: bool = True) -> None:
    """A 401 saying what to send; pointing at the protected-resource metadata only when it names a provider."""
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and (f'resource_metadata="{METADATA}"' in challenge) is metadata
    hint = "send the header 'Authorization: Bearer TOKEN'"
    assert hint in response.json()["error_description"] and hint in challenge
    assert "--header 'Authorization: Bearer TOKEN'" in challenge  # the Inspector's way to send it


def assert_works(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] is False and result["structuredContent"]["name"] == "Support Chat"


@pytest.mark.anyio
async def test_tokens_file_no_wrong_and_good_token(
    http_portal: StandInPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, revoked = "goodTEAMtoken0123456789", "revokedTEAMtoken987"
    path = digest_file(tmp_path, good, revoked)
    caplog.set_level(logging.DEBUG)
    async with served(http_portal, B24_HTTP_TOKENS_FILE=str(path)) as http:
        assert_refused(await call(http, None), metadata=False)
        assert_refused(await call(http, "wrongTOKEN"), metadata=False)
        assert_refused(await call(http, ""), metadata=False)
        assert_works(await call(http, good))
        # No authorization server to name (tokens come from `b24-mcp token`): no metadata sending OAuth clients
        # into a login that cannot succeed.
        assert (await http.get("/.well-known/oauth-protected-resource/mcp")).status_code == 404

        assert_works(await call(http, revoked))
        path.write_text(f"{team.digest(good)}\n")  # revoked by deleting its line: no restart
        assert_refused(await call(http, revoked), metadata=False)
        assert_works(await call(http, good))
        path.write_text("not a digest\n")  # a broken file admits no one (a revoked token must not live on)
        assert_refused(await call(http, good), metadata=False)
    seen = json.dumps([[r.path, r.headers, r.body] for r in http_portal.requests])
    assert http_portal.count() == 3 and good not in seen and "Bearer" not in seen  # never forwarded to Bitrix24
    assert good not in caplog.text and revoked not in caplog.text  # never logged, even at DEBUG


@pytest.mark.anyio
async def test_a_browser_get_is_answered_at_once_not_held_open(http_portal: StandInPortal) -> None:
    """Stateless, the server never sends on a GET stream: the SDK's would stay open forever, so GET gets 405."""
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    async with served(http_portal) as http:
        for headers in (browser, HEADERS):
            with anyio.fail_after(10):
                response = await http.get("/mcp", headers=headers)
            assert response.status_code == 405 and response.headers["allow"] == "POST"
            assert "MCP endpoint" in response.text
        assert_works(await call(http, None))  # POST is served as before


# --- JWTs ---------------------------------------------------------------------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


class Jwks:
    """A loopback JWKS endpoint whose key set the test can change; counts fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.status = 200
        self.body: bytes | None = None  # sent instead of the key set
        self.hold = threading.Event()  # cleared: each fetch waits (at most 10 s) until the test sets it
        self.hold.set()
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                jwks.hold.wait(10)
                body = jwks.body if jwks.body is not None else json.dumps({"keys": jwks.keys}).encode()
                self.send_response(jwks.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return rsa_key(), rsa_key()


@pytest.fixture
def jwks(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> Iterator[Jwks]:
    server = Jwks([public_jwk(keys[0], "k1")])
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def token(key: Any, *, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


def hmac_forgery(secret: bytes | None) -> str:
    """A token signed with HS256 using `secret`, or with alg "none" (PyJWT refuses to make the first one)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256" if secret else "none", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 300}).encode()
    )
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest() if secret else b""
    return f"{header}.{payload}.{b64(signature)}"


def jwt_env(jwks: Jwks) -> dict[str, str]:
    return {"B24_HTTP_JWKS_URL": jwks.url, "B24_HTTP_ISSUER": ISSUER, "B24_HTTP_AUDIENCE": AUDIENCE}


@pytest.mark.anyio
async def test_jwts_expired_wrong_audience_forged_refused_good_works(
    http_portal: StandInPortal, jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    ours, other = keys
    public_pem = ours.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    async with served(http_portal, **jwt_env(jwks)) as http:
        assert_refused(await call(http, None))
        metadata = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert metadata["resource"] == f"{BASE}/mcp" and metadata["authorization_servers"] == [ISSUER]
        good = token(ours)
        assert_works(await call(http, good))
        for bad in [
            token(ours, exp=int(time.time()) - 600),  # expired (beyond the 30 s leeway)
            token(ours, aud="another-service"),  # wrong audience
            token(ours, iss="https://evil.example.com/"),  # wrong issuer
            token(ours, exp=None),  # no expiry: required
            token(other),  # the right kid, signed by a key that is not in the JWKS
            hmac_forgery(public_pem),  # HS256 with the public key as the secret: the classic forgery
            hmac_forgery(None),  # alg "none": no signature at all
            good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),  # a signature tampered with
        ]:
            assert_refused(await call(http, bad))
    assert http_portal.count() == 1


@pytest.mark.anyio
async def test_jwks_is_cached_and_refetched_for_a_new_key_at_most_once_per_interval(
    jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    ours, rotated = keys
    verifier = JwtVerifier(team.JwtConfig(jwks.url, ISSUER, AUDIENCE))
    try:
        for _ in range(5):
            assert await verifier.verify_token(token(ours)) is not None
        assert jwks.fetches == 1  # cached
        for kid in ("forged1", "forged2", "forged3"):  # unknown kids cannot make us hammer the provider
            assert await verifier.verify_token(token(ours, kid=kid)) is None
        assert jwks.fetches == 1  # the last fetch is younger than JWKS_MIN_REFETCH
        jwks.keys = [*jwks.keys, public_jwk(rotated, "k2")]  # the provider rotates its key
        verifier._tried_at -= JWKS_MIN_REFETCH  # the refetch interval has passed
        for _ in range(3):
            accepted = await verifier.verify_token(token(rotated, kid="k2"))
            assert accepted is not None and accepted.subject == "alice"
            assert accepted.token.startswith("jwt:") and "." not in accepted.token  # a fingerprint, not the JWT
        assert jwks.fetches == 2  # one fetch found the new key
        assert await verifier.verify_token(token(ours, kid="forged4")) is None and jwks.fetches == 2
    finally:
        await verifier.aclose()


@pytest.mark.anyio
async def test_unreachable_jwks_refuses_tokens_without_failing(
    keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
) -> None:
    from tests.redis_server import free_port

    verifier = JwtVerifier(team.JwtConfig(f"http://127.0.0.1:{free_port()}/jwks.json", ISSUER, AUDIENCE))
    try:
        assert await verifier.verify_token(token(keys[0])) is None
    finally:
        await verifier.aclose()


def verifier_of(jwks: Jwks) -> JwtVerifier:
    return JwtVerifier(team.JwtConfig(jwks.url, ISSUER, AUDIENCE))


@pytest.mark.anyio
async def test_a_stale_key_set_serves_its_keys_while_one_refetch_runs(
    jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    """Past its lifetime, with the provider hanging: valid tokens are answered from the cached keys at once (the
    fetch is held until they are), and only one fetch is made for all of them."""
    verifier = verifier_of(jwks)
    try:
        assert await verifier.verify_token(token(keys[0])) is not None
        verifier._fetched_at -= JWKS_TTL + 1
        verifier._tried_at -= JWKS_MIN_REFETCH + 1
        jwks.hold.clear()  # the provider hangs from now on
        results = []

        async def one() -> None:
            results.append(await verifier.verify_token(token(keys[0])))

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(one)
        assert len(results) == 6 and all(r is not None for r in results)
        refetch = verifier._fetching
        assert refetch is not None and not refetch.done()  # answered while the one refetch is still held
        jwks.hold.set()
        await refetch
        assert jwks.fetches == 2  # the first, and one refetch for all six
    finally:
        await verifier.aclose()


@pytest.mark.anyio
async def test_a_refusing_jwks_is_fetched_once_per_interval_and_logged_once(
    jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], caplog: pytest.LogCaptureFixture
) -> None:
    jwks.status = 503
    verifier = verifier_of(jwks)
    try:
        for _ in range(50):
            assert await verifier.verify_token(token(keys[0])) is None
        assert jwks.fetches == 1
        verifier._tried_at -= JWKS_MIN_REFETCH + 1  # the interval has passed: one more try, not logged again
        assert await verifier.verify_token(token(keys[0])) is None
        assert jwks.fetches == 2
        jwks.status = 200
        verifier._tried_at -= JWKS_MIN_REFETCH + 1
        assert await verifier.verify_token(token(keys[0])) is not None
    finally:
        await verifier.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "cannot fetch the JWKS" in w]) == 1 and "fetched the JWKS" in warnings[-1]


@pytest.mark.anyio
async def test_unknown_kids_wait_for_the_one_fetch_under_way(
    jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    jwks.hold.clear()
    verifier = verifier_of(jwks)
    try:
        results = []

        async def one(kid: str) -> None:
            results.append(await verifier.verify_token(token(keys[0], kid=kid)))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, f"forged{i}")
            tg.start_soon(one, "k1")
            await anyio.sleep(0.05)
            jwks.hold.set()
        assert jwks.fetches == 1 and sum(r is not None for r in results) == 1
    finally:
        await verifier.aclose()


@pytest.mark.anyio
async def test_a_deeply_nested_jwks_is_refused_like_any_bad_one(
    jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], caplog: pytest.LogCaptureFixture
) -> None:
    jwks.body = b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    verifier = verifier_of(jwks)
    try:
        assert await verifier.verify_token(token(keys[0])) is None
    finally:
        await verifier.aclose()
    assert "cannot fetch the JWKS" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["PS256", "RS384", "RS512"])
async def test_a_key_published_without_alg_serves_any_rsa_algorithm(
    jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], alg: str
) -> None:
    jwks.keys = [{k: v for k, v in public_jwk(keys[0], "k1").items() if k != "alg"}]
    verifier = verifier_of(jwks)
    try:
        assert await verifier.verify_token(token(keys[0], alg=alg)) is not None
        jwks.keys = [public_jwk(keys[0], "k1")]  # published for RS256 only: another algorithm is refused
        verifier._tried_at -= JWKS_MIN_REFETCH + 1
        verifier._fetched_at -= JWKS_TTL + 1
        await verifier.verify_token(token(keys[0]))  # starts the refetch
        assert verifier._fetching is not None
        await verifier._fetching
        assert await verifier.verify_token(token(keys[0], alg=alg)) is None
    finally:
        await verifier.aclose()


@pytest.mark.anyio
async def test_the_30_s_leeway_holds_for_exp_through_the_sdk(
    http_portal: StandInPortal, jwks: Jwks, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> None:
    async with served(http_portal, **jwt_env(jwks)) as http:
        assert_works(await call(http, token(keys[0], exp=int(time.time()) - 10)))  # 10 s past: within the leeway
        assert_refused(await call(http, token(keys[0], exp=int(time.time()) - 60)))

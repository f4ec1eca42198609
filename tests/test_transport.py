"""The HTTP bind policy: which Host and Origin headers each bind address accepts, and which binds are refused.

The policy is a pure function, so most of this is a table, judged by the SDK's own checker (its
`TransportSecurityMiddleware`) rather than by the lists' contents: what matters is what a request meets.
A subprocess test then shows `--host 0.0.0.0` without `--allowed-host` refused before anything is served. A
real server on 127.0.0.2 (an address the SDK alone leaves unprotected) refusing a foreign Host and Origin is
tests/e2e/test_inspector.py's: its HTTP server binds there and serves the Inspector's runs too.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request

from b24_mcp.errors import ConfigError
from b24_mcp.transport import transport_security
from tests.e2e.helpers import clean_env
from tests.values import ROOT


def accepts(settings: TransportSecuritySettings, host: str, origin: str | None = None) -> bool:
    """Whether the SDK's checker lets a GET with these headers through."""
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    request = Request({"type": "http", "method": "GET", "path": "/mcp", "headers": headers})

    async def check() -> bool:
        return await TransportSecurityMiddleware(settings).validate_request(request) is None

    return anyio.run(check)


HOSTS: list[tuple[str, list[str], list[str], list[str]]] = [
    # bind host, --allowed-host values, Host headers accepted, Host headers refused
    (
        "127.0.0.1",
        [],
        ["127.0.0.1:8000", "127.0.0.1", "localhost:8000", "localhost", "[::1]:8000"],
        ["evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example.com:8000", ""],
    ),
    ("127.0.0.2", [], ["127.0.0.2:8000", "127.0.0.2", "127.0.0.1:8000", "localhost:8000"], ["evil.example.com:8000"]),
    ("127.1.2.3", [], ["127.1.2.3:9000", "localhost:9000"], ["127.1.2.4:9000", "evil.example.com"]),
    ("::1", [], ["[::1]:8000", "[::1]", "localhost:8000"], ["evil.example.com:8000", "::1"]),
    ("localhost", [], ["localhost:8000", "127.0.0.1:8000"], ["evil.example.com"]),
    # A local reverse proxy passing its own Host header: named, and added to the loopback names.
    (
        "127.0.0.1",
        ["proxy.internal"],
        ["proxy.internal", "proxy.internal:8080", "localhost:8000"],
        ["evil.example.com"],
    ),
    # Beyond loopback only the named hosts pass: not the bind address, not loopback names.
    (
        "0.0.0.0",
        ["mcp.example.com"],
        ["mcp.example.com", "mcp.example.com:443"],
        ["0.0.0.0:8000", "localhost:8000", "127.0.0.1:8000", "evil.example.com", "mcp.example.com.evil.example.com"],
    ),
    (
        "192.0.2.10",
        ["mcp.example.com:8443"],
        ["mcp.example.com:8443"],
        ["mcp.example.com", "mcp.example.com:8444", "192.0.2.10:8443"],
    ),
    ("mcp-host.internal", ["MCP.Example.COM"], ["mcp.example.com"], ["mcp-host.internal:8000"]),
    ("::", ["[2001:db8::1]:8443", "2001:db8::2"], ["[2001:db8::1]:8443", "[2001:db8::2]:80"], ["[2001:db8::1]:80"]),
]


@pytest.mark.parametrize(("bind", "allowed", "good", "bad"), HOSTS)
def test_host_policy(bind: str, allowed: list[str], good: list[str], bad: list[str]) -> None:
    settings = transport_security(bind, allowed)
    assert settings.enable_dns_rebinding_protection
    assert [h for h in good if not accepts(settings, h)] == []
    assert [h for h in bad if accepts(settings, h)] == []


ORIGINS: list[tuple[str, list[str], str, list[str], list[str]]] = [
    # bind host, --allowed-host values, a Host that passes, Origins accepted, Origins refused
    (
        "127.0.0.2",
        [],
        "127.0.0.2:8000",
        ["http://localhost:5173", "http://127.0.0.1:8000", "https://localhost", "http://127.0.0.2:8000"],
        ["http://evil.example.com", "https://evil.example.com:8000", "http://localhost.evil.example.com:80", "null"],
    ),
    (
        "0.0.0.0",
        ["mcp.example.com"],
        "mcp.example.com",
        ["https://mcp.example.com", "http://mcp.example.com:8080"],
        ["http://localhost:3000", "https://evil.example.com", "https://mcp.example.com.evil.example.com"],
    ),
]


@pytest.mark.parametrize(("bind", "allowed", "host", "good", "bad"), ORIGINS)
def test_origins_follow_the_allowed_hosts(
    bind: str, allowed: list[str], host: str, good: list[str], bad: list[str]
) -> None:
    settings = transport_security(bind, allowed)
    assert accepts(settings, host)  # no Origin at all: a same-origin or non-browser client
    assert [o for o in good if not accepts(settings, host, o)] == []
    assert [o for o in bad if accepts(settings, host, o)] == []


REFUSED: list[tuple[str, list[str], str]] = [
    # bind host, --allowed-host values, what the one-line error must say
    ("0.0.0.0", [], "--allowed-host mcp.example.com"),
    ("::", [], "--allowed-host mcp.example.com"),
    ("192.0.2.10", [], "--allowed-host mcp.example.com"),
    ("mcp-host.internal", [], "--allowed-host mcp.example.com"),
    ("127.0.0.1", ["https://mcp.example.com"], "no scheme or path"),
    ("0.0.0.0", ["mcp.example.com/mcp"], "no scheme or path"),
    ("0.0.0.0", ["mcp example.com"], "without spaces"),
    ("0.0.0.0", [""], "without spaces"),
    ("0.0.0.0", ["*.example.com"], "no wildcards"),
    ("0.0.0.0", ["mcp.example.com:0"], "bad port"),
    ("0.0.0.0", ["mcp.example.com:99999"], "bad port"),
    ("0.0.0.0", ["mcp.example.com:"], "bad port"),
    ("0.0.0.0", ["[mcp.example.com]"], "not an IPv6 address"),
    ("0.0.0.0", ["mcp.example.com", "bad host"], "'bad host'"),  # every value is checked, not just the first
]


@pytest.mark.parametrize(("bind", "allowed", "says"), REFUSED)
def test_refused(bind: str, allowed: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        transport_security(bind, allowed)
    message = str(caught.value)
    assert says in message and "--allowed-host" in message
    assert "\n" not in message


@pytest.mark.e2e
def test_http_beyond_loopback_without_allowed_host_is_refused_before_serving(tmp_path: Path) -> None:
    # Should the check ever be skipped, the server must not bind 0.0.0.0: hold the port on loopback so the bind
    # fails (a port in use exits 1, not 2) instead of exposing anything.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        command = ["--demo", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", str(port)]
        done = subprocess.run(
            [sys.executable, "-m", "b24_mcp", *command],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(),
            cwd=ROOT,
        )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    allowed, auth = done.stderr.splitlines()  # every reason at once: no allowed host, no authentication
    assert "--allowed-host mcp.example.com" in allowed and "no authentication is configured" in auth
    assert "Traceback" not in done.stderr


@pytest.mark.anyio
async def test_half_sent_requests_are_closed_and_whole_ones_served() -> None:
    """uvicorn has no request-head timeout: without one, each half-sent request held a descriptor for good."""
    import httpx

    from b24_mcp import settings as config
    from b24_mcp.server import build_server
    from b24_mcp.transport import http_server
    from tests.redis_server import free_port

    port = free_port()
    uv = http_server(
        build_server(config.load({}, demo=True)),
        host="127.0.0.1",
        port=port,
        security=transport_security("127.0.0.1"),
        header_timeout=0.3,
    )

    def half_sent() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")  # and nothing more
            return conn.recv(1024)  # b"" once the server closes it; a socket timeout fails the test

    async with anyio.create_task_group() as tg:
        tg.start_soon(uv.serve)
        with anyio.fail_after(10):
            while not uv.started:  # noqa: ASYNC110 - uvicorn's flag
                await anyio.sleep(0.01)
        closed: list[bytes] = []

        async def one() -> None:
            closed.append(await anyio.to_thread.run_sync(half_sent))

        async with anyio.create_task_group() as clients:
            for _ in range(20):
                clients.start_soon(one)
        async with httpx.AsyncClient() as http:
            whole = await http.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp")
        uv.should_exit = True
    assert closed == [b""] * 20
    assert whole.status_code in (200, 404)  # answered: the limit is on slow heads, not on requests

"""Serving the MCP server over stdio, or over Streamable HTTP with a Host/Origin policy for every bind.

The SDK checks Host and Origin (against DNS rebinding) only when bound to literally 127.0.0.1, localhost or
::1, so `transport_security` decides the policy for any bind address, as a pure function checked (like
`bearer_auth`) before the SDK is even imported.
"""

from __future__ import annotations

import asyncio
import errno
import io
import ipaddress
import json
import logging
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import ConfigError
from .forms import is_loopback

if TYPE_CHECKING:  # importing the SDK takes about a second: a refused start should not wait for it
    import uvicorn
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette

    from .settings import Settings
    from .team import HttpAuthConfig

PATH = "/mcp"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
EXAMPLE = "--allowed-host mcp.example.com"
HEADER_TIMEOUT = 10.0  # seconds a client may take to send a request's head (the proxy in front should be stricter)
IDLE_TIMEOUT = 5  # seconds a kept-alive connection may stay idle
MAX_CONNECTIONS = 1000  # connections and requests at once; beyond, uvicorn answers 503

log = logging.getLogger("b24_mcp")

# Host names as clients send them: letters, digits, dots, hyphens (and underscores, common in container names).
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")
_FORM = "HOST or HOST:PORT, e.g. " + EXAMPLE


def serve_stdio(server: MCPServer) -> None:
    """JSON-RPC on stdin/stdout: what desktop hosts launch. Nothing else may write to stdout."""
    # The SDK serves a sys.stdin not backed by fd 0 as it is: ours drops `params` that are not an object, which
    # the SDK's reader would otherwise discard with the whole request, leaving the client waiting for an answer.
    sys.stdin = io.TextIOWrapper(io.BufferedReader(_ParamsGuard(sys.stdin.buffer)), encoding="utf-8")
    server.run()


class _ParamsGuard(io.RawIOBase):
    """stdin, line by line, with a request's non-object `params` removed (the SDK then answers -32602)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            self._pending = guard_params(self._source.readline())
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size


def guard_params(line: bytes) -> bytes:
    """One JSON-RPC line; a request whose `params` is not an object loses it, to be answered as invalid."""
    if b'"params"' not in line:
        return line
    try:
        message = json.loads(line)
    except ValueError:
        return line
    if isinstance(message, dict) and "id" in message and "params" in message:
        if not isinstance(message["params"], dict):
            del message["params"]
            return json.dumps(message).encode() + b"\n"
    return line


def transport_security(bind_host: str, allowed_hosts: Iterable[str] = ()) -> TransportSecuritySettings:
    """The Host/Origin policy for serving on `bind_host`; `ConfigError` (one line) when it cannot be safe.

    Each name is allowed bare (a proxy on port 80/443 sends no port) and as `NAME:*`, the SDK's pattern for
    "any port"; a `--allowed-host HOST:PORT` allows that port only. The SDK cannot match 127.*, so a loopback
    bind lists the usual names plus the address it is bound to: no other 127.x address reaches it directly.
    """
    extra = [_allowed_host(raw) for raw in allowed_hosts]  # validated first: a typo is reported as such
    if is_loopback(bind_host):
        names = [*LOOPBACK_NAMES, _host_form(bind_host), *extra]
    elif extra:
        names = extra
    else:
        raise ConfigError(
            f"--host {bind_host} is not a loopback address, so name the host names clients will use to reach it "
            f"(other Host headers are refused, against DNS rebinding): add e.g. {EXAMPLE}"
        )
    hosts = list(dict.fromkeys(h for name in names for h in ((name,) if _has_port(name) else (name, f"{name}:*"))))
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]

    from mcp.server.transport_security import TransportSecuritySettings

    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def bearer_auth(bind_host: str, no_auth: bool, env: Mapping[str, str]) -> HttpAuthConfig | None:
    """The bearer-token check to serve with (None: none); `ConfigError` (one line) when serving would be unsafe."""
    from .team import require_auth

    return require_auth(bind_host, no_auth, env)


def server_auth(
    config: HttpAuthConfig | None, *, host: str, port: int, allowed_hosts: Iterable[str] = ()
) -> dict[str, Any]:
    """`build_server`'s keyword arguments for `config`: the SDK's AuthSettings and our TokenVerifier ({} for none)."""
    if config is None:
        return {}
    from .http_auth import resource_url, server_auth

    names = [_allowed_host(raw) for raw in allowed_hosts]
    auth, verifier = server_auth(config, resource_url(config, _host_form(host), port, names, PATH))
    return {"auth": auth, "token_verifier": verifier}


def serve_http(server: MCPServer, *, host: str, port: int, security: TransportSecuritySettings) -> None:
    """Streamable HTTP at `PATH`, stateless with JSON answers, refusing Hosts and Origins outside `security`."""
    bound = _bind(host, port)  # here, not in uvicorn: a port in use is one line naming --port, not a raw errno
    http_server(server, host=host, port=port, security=security).run(sockets=[bound])


def http_server(
    server: MCPServer,
    *,
    host: str,
    port: int,
    security: TransportSecuritySettings,
    header_timeout: float = HEADER_TIMEOUT,
) -> uvicorn.Server:
    """The uvicorn server `serve_http` runs: ours rather than `MCPServer.run`'s, so its logs pass through the
    masking stderr handler, nothing reaches stdout, and "serving at" is printed only once the port is bound."""
    import uvicorn

    authenticated = server.settings.auth is not None
    if not is_loopback(host):
        log.warning(
            "serving on %s with no TLS%s of its own: put a reverse proxy with %s in front of it (see the README, "
            '"Run it for a team") before anyone else can reach it',
            host,
            "" if authenticated else " or authentication",
            "TLS" if authenticated else "both",
        )
    url = f"http://{_host_form(host)}:{port}{PATH}"
    named = [h for h in security.allowed_hosts if not h.endswith(":*") and not is_loopback(_hostname(h))]
    line = f"b24-mcp: serving MCP over Streamable HTTP at {url}"
    if named:
        line += f" for Host {', '.join(named)}"
    if authenticated:
        line += " (bearer token required)"

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(line, file=sys.stderr, flush=True)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            oauth = sys.modules.get("b24_mcp.bitrix24.oauth")  # loaded only if an OAuth session was made
            if oauth is not None:
                await oauth.RENEWALS.settle()  # a rotated pair on its way is saved before the loop ends

    # log_config=None: uvicorn keeps its hands off logging, so its records (access lines at INFO) go to the
    # root handler on stderr at B24_LOG_LEVEL, never to stdout as its default config would send them.
    config = uvicorn.Config(
        http_app(server, host, security),
        host=host,
        port=port,
        log_config=None,
        log_level=None,
        http=_timed_protocol(header_timeout),
        timeout_keep_alive=IDLE_TIMEOUT,
        limit_concurrency=MAX_CONNECTIONS,
    )
    return Server(config)


def http_app(server: MCPServer, host: str, security: TransportSecuritySettings) -> Starlette:
    """The ASGI app `serve_http` serves: the SDK's Streamable HTTP app at `PATH`, stateless with JSON answers (any
    replica can serve any request; nothing is lost when one restarts), behind `_Endpoint`."""
    app = server.streamable_http_app(
        stateless_http=True, json_response=True, streamable_http_path=PATH, transport_security=security, host=host
    )
    app.add_middleware(_Endpoint, hint=refusal_hint(server.settings.auth))
    return app


class BindError(Exception):
    """The address and port cannot be bound (in use, most often); the message names the option to change."""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                f"{host} port {port} is in use by another process: stop that process, or serve on another port "
                f"with --port (e.g. --port {port + 1 if port < 65535 else 8000})"
            ) from None
        why = exc.strerror or exc
        raise BindError(f"cannot serve on {host} port {port} ({why}): check --host and --port") from None
    return sock


def refusal_hint(auth: AuthSettings | None) -> str | None:
    """What a request without a good bearer token is told to send (None: no authentication)."""
    if auth is None:
        return None
    return (
        "send the header 'Authorization: Bearer TOKEN' with a token this server accepts (`b24-mcp token` makes "
        "one for B24_HTTP_TOKENS_FILE; in the MCP Inspector: --header 'Authorization: Bearer TOKEN')"
    )


class _Endpoint:
    """Two answers the SDK's app does not give at `PATH`:

    - GET: 405 (the spec's answer for "no event stream here"). Stateless, this server never sends on a GET stream,
      so the SDK's would stay open forever: a browser pointed at the URL hung on it.
    - 401: the SDK's "Authentication required", with what to send instead (`refusal_hint`).
    """

    def __init__(self, app: Any, hint: str | None) -> None:
        self.app = app
        self.hint = hint

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            said = b"b24-mcp: this is an MCP endpoint (Streamable HTTP, POST only): add its URL to an MCP host.\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"POST")]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": said})
            return
        if self.hint is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "invalid_token", "error_description": self.hint}).encode()
        refused = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
                headers = [(k, v) for k, v in message["headers"] if k not in (b"content-length", b"www-authenticate")]
                challenge = dict(message["headers"]).get(b"www-authenticate", b"Bearer").decode()
                challenge = challenge.replace('"Authentication required"', json.dumps(self.hint))
                headers += [(b"content-length", str(len(body)).encode()), (b"www-authenticate", challenge.encode())]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and refused:
                message = {**message, "body": body}
            await send(message)

        await self.app(scope, receive, sending)


def unusable_redis(settings: Settings) -> list[str]:
    """What is wrong with the replicas' Redis (B24_REDIS_URL), proven by one PING before serving; [] if fine or unset.

    Otherwise a wrong password or a Redis that is down shows only at the first tool call."""
    redis_config = settings.team.redis if settings.team is not None else None
    if redis_config is None:
        return []
    import anyio

    from .bitrix24.redis_state import Redis
    from .errors import UpstreamError

    async def ping() -> None:
        redis = Redis(redis_config)
        try:
            await redis.ping()
        finally:
            await redis.aclose()

    try:
        anyio.run(ping)
    except UpstreamError as err:
        return [str(err)]
    return []


def _allowed_host(raw: str) -> str:
    """One `--allowed-host` value, normalised to what a Host header carries (lower case, IPv6 in brackets)."""
    if not raw or re.search(r"\s", raw):
        raise ConfigError(f"--allowed-host {raw!r} must be a host name without spaces; expected {_FORM}")
    if "://" in raw or re.search(r"[/?#@\\]", raw):
        raise ConfigError(f"--allowed-host {raw!r} must be a bare host name, no scheme or path; expected {_FORM}")
    value = raw.lower()
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::([^:]*))?", value)
    if bracketed:
        name, port = bracketed[1], bracketed[2]
    elif value.count(":") > 1:
        name, port = value, None  # a bare IPv6 address: no room for a port
    else:
        name, _, port = value.partition(":")
        port = port if ":" in value else None
    if bracketed or ":" in name:  # brackets hold an IPv6 address and nothing else
        try:
            name = f"[{ipaddress.IPv6Address(name).compressed}]"
        except ValueError:
            raise ConfigError(f"--allowed-host {raw!r} is not an IPv6 address; expected e.g. [2001:db8::1]") from None
    elif not _NAME.fullmatch(name):
        raise ConfigError(f"--allowed-host {raw!r} is not a host name (no wildcards); expected {_FORM}")
    if port is None:
        return name
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(
            f"--allowed-host {raw!r} has a bad port: expected a number from 1 to 65535, e.g. {EXAMPLE}:8443"
        )
    return f"{name}:{int(port)}"


def _host_form(host: str) -> str:
    """A bind address as it appears in a Host header or URL: IPv6 in brackets, the rest as given."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def _has_port(name: str) -> bool:
    return re.search(r":[0-9]+$", name) is not None  # IPv6 addresses are bracketed: "[::1]" has no port


def _hostname(host: str) -> str:
    return host.rpartition(":")[0] if _has_port(host) else host


def _timed_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head is not whole within `header_timeout`:
    uvicorn has no such limit, so half-sent requests would each hold a descriptor, before any authentication."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(header_timeout, self._head_late)

        def _head_late(self) -> None:
            if self.conn.their_state in (h11.IDLE, h11.DONE) and self.conn.our_state in (h11.IDLE, h11.DONE):
                self.transport.close()  # no request under way: its head did not come in time

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return TimedH11

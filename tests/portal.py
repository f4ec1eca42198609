"""A stand-in Bitrix24 portal for the tests: a real HTTP(S) server on 127.0.0.1 in front of `b24_mcp.standin`.

Why a real server and not a mock: end-to-end tests run b24-mcp as a subprocess, which can only be reached
through a socket, and TLS, keep-alive, hangs and half-sent bodies only exist on a real connection. It runs in
its own threads (one per request, so concurrency is real and measurable), binds 127.0.0.1 only, and records
every request it receives, so tests assert what the portal saw rather than what the client believes it sent.

What the portal answers is `b24_mcp.standin.StandIn`'s, shared with `b24-mcp --demo` (webhook auth by path,
OAuth by `auth=` with rotating refresh tokens at `/oauth/token/`, the imbot.v2 methods). This face adds what
only a server has: Bitrix24's leaky bucket when `rate`/`burst` are given, a fixed `delay`, and scripted
faults (`script()`) that are answered in order before normal behaviour resumes.
"""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import trustme

from b24_mcp.standin import SCOPES, OAuthApp, StandIn, time_block
from b24_mcp.standin_data import CHATS, DOC_CHAT, MEMBERS
from b24_mcp.standin_files import DOWNLOAD_PATH
from tests.values import CODE, OAUTH_ACCESS, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH, TOKEN

T = TypeVar("T")

# Test-only: a thread whose fields include undocumented ones and PHP's empty arrays, to prove they pass through.
THREAD = {
    **DOC_CHAT, "id": 9, "dialogId": "chat9", "name": "Release thread", "type": "thread", "color": None,
    "dateCreate": None, "lastMessageId": None, "lastId": None, "diskFolderId": None, "parentChatId": 12,
    "parentMessageId": 34, "entityLink": [], "permissions": [], "aiProvider": "x", "isTemporary": False,
    "newNested": {"a": [1, 2]},
}  # fmt: skip


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0


@dataclass
class Fault:
    """One scripted answer; constructors below."""

    kind: str
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    seconds: float = 0.0
    result: Any = None
    time_block: dict[str, Any] | None = None

    @classmethod
    def error(cls, status: int, code: str, description: str) -> Fault:
        return cls("raw", status, json.dumps({"error": code, "error_description": description}).encode())

    @classmethod
    def raw(cls, status: int, body: bytes, content_type: str = "application/json") -> Fault:
        return cls("raw", status, body, content_type)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def trickle(cls, total_seconds: float) -> Fault:
        return cls("trickle", seconds=total_seconds)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def ok(cls, result: Any, time_block: dict[str, Any] | None = None) -> Fault:
        return cls("ok", result=result, time_block=time_block)

    @classmethod
    def time_limit(cls, reset_in_seconds: float) -> Fault:
        """429 OPERATION_TIME_LIMIT, with a `time` block saying when the method's budget resets."""
        return cls("time_limit", 429, seconds=reset_in_seconds)


@dataclass
class OAuthSettings(OAuthApp):
    """The test application, with its seed token pair."""

    client_id: str = OAUTH_CLIENT_ID
    client_secret: str = OAUTH_CLIENT_SECRET
    access_token: str = OAUTH_ACCESS
    refresh_token: str = OAUTH_REFRESH
    access_ttl: int = 3600


@dataclass
class _State:
    """What the HTTP face counts. `lock` is the stand-in's, so a test may hold it to change tokens too."""

    standin: StandIn
    requests: list[RecordedRequest] = field(default_factory=list)
    script: list[Fault] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    refusals: int = 0
    heads: int = 0  # HEAD requests for the home page (b24-mcp's warm-up connection)
    level: float = 0.0
    level_at: float = field(default_factory=time.monotonic)

    @property
    def lock(self) -> threading.Lock:
        return self.standin.lock

    @property
    def refresh_tokens(self) -> set[str]:
        # test_oauth_e2e clears it to revoke the app; read live, since every refresh replaces the set.
        return self.standin.refresh_tokens


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a burst of a dozen new connections overflowed it, the kernel dropped
    # the extra SYNs, and those requests came a 1 s retransmit later ("all at once" tests saw them one by one).
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up or failed its handshake: that connection ends, quietly, as on a real portal


HANDSHAKE_SECONDS = 10.0  # a client that connects and never completes TLS is dropped after this


class StandInPortal:
    """A portal with bot 456 (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        *,
        tls_ca: trustme.CA | None = None,
        webhook_user: int = 1,
        webhook_code: str = CODE,
        bot_token: str = TOKEN,
        bot_type: str = "personal",
        scopes: Iterable[str] = SCOPES,
        rate: float | None = None,
        burst: int | None = None,
        delay: float = 0.0,
        oauth: OAuthSettings | None = None,
        refresh_delay: float = 0.0,
    ) -> None:
        self.webhook_user = webhook_user
        self.webhook_code = webhook_code
        self.bot_token = bot_token
        self.rate = rate
        self.burst = burst
        self.delay = delay
        self.oauth = oauth
        self.refresh_delay = refresh_delay
        # A refresh whose client hung up during `refresh_delay` is not carried out (the test of a replica killed
        # mid-refresh, tests/e2e/test_team.py): an OAuth server that rotated anyway would leave the new pair with
        # a dead process, lost to any client design. Off by default: every request received is carried out.
        self.drop_abandoned_refresh = False
        # What the token endpoint does once it has rotated the pair (the new pair is then live at the server):
        # "late" answers after `rotated_delay` seconds, "drop" hangs up without answering, "half" sends the headers
        # and half the body, then hangs up. `rotated` is set the moment a pair was rotated.
        self.after_rotation: str | None = None
        self.rotated_delay = 0.0
        self.rotated = threading.Event()
        self._tls_ca = tls_ca
        self._tmp = tempfile.TemporaryDirectory(prefix="b24-portal-")
        self.ca_pem_path: Path | None = None
        self._stopping = threading.Event()
        self._server = self._make_server()
        self.standin = StandIn(
            webhook_user=webhook_user,
            webhook_code=webhook_code,
            bot_token=bot_token,
            bot_type=bot_type,
            scopes=scopes,
            oauth=oauth,
            portal_url=self.base_url,
            chats={**CHATS, "chat9": THREAD},
            members={**MEMBERS, "chat9": [1, 2, 456]},
        )
        self.bot_id = self.standin.bot_id
        self.chats = self.standin.chats
        self._state = _State(self.standin)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _make_server(self) -> ThreadingHTTPServer:
        portal = self

        class Handler(_Handler):
            pass

        Handler.portal = portal
        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self._tls_ca is not None:
            cert = self._tls_ca.issue_cert("127.0.0.1", "localhost")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(context)
            self.ca_pem_path = Path(self._tmp.name) / "ca.pem"
            self._tls_ca.cert_pem.write_to_path(str(self.ca_pem_path))
            # The handshake happens in the request's own thread (_Handler.setup), not in accept(): a client that
            # connects and never says hello must not stall the accepting thread, and with it stop().
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        return server

    def __enter__(self) -> StandInPortal:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2)
        self._tmp.cleanup()

    # -- what tests read and steer --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls_ca is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/rest/{self.webhook_user}/{self.webhook_code}/"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def count(self, method_name: str = "imbot.v2.Chat.get") -> int:
        return sum(1 for r in self.requests if _method_of(r.path) == method_name)

    @property
    def max_in_flight(self) -> int:
        return self._state.max_in_flight

    @property
    def heads(self) -> int:
        return self._state.heads

    @property
    def refusals(self) -> int:
        return self._state.refusals

    @property
    def refresh_count(self) -> int:
        return self.standin.refresh_count

    @property
    def invalid_grants(self) -> int:
        return self.standin.invalid_grants

    @property
    def current_access_tokens(self) -> set[str]:
        with self._state.lock:
            return set(self.standin.access_tokens)

    def script(self, *faults: Fault) -> None:
        with self._state.lock:
            self._state.script.extend(faults)

    def expire_access_token(self) -> None:
        self.standin.expire_access_tokens()

    # -- behaviour ---------------------------------------------------------------------------------------------
    def _admit(self) -> bool:
        """Bitrix24's leaky bucket: +1 a request, drained `rate`/s, refused above `burst`."""
        if self.rate is None or self.burst is None:
            return True
        with self._state.lock:
            now = time.monotonic()
            st = self._state
            st.level = max(0.0, st.level - (now - st.level_at) * self.rate)
            st.level_at = now
            if st.level + 1 > self.burst + 1e-9:
                st.refusals += 1
                return False
            st.level += 1
            return True

    def _next_fault(self) -> Fault | None:
        with self._state.lock:
            return self._state.script.pop(0) if self._state.script else None


def _method_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write (flushed in _send), not two
    portal: StandInPortal

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_SECONDS)
            self.request.do_handshake()  # an error ends this connection only (_Server.handle_error)
            self.request.settimeout(None)
        super().setup()
        # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms to small answers.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stdout and stderr stay quiet

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        """The portal's home page, as b24-mcp's warm-up asks for it (counted apart: it is not a REST call)."""
        with self.portal._state.lock:
            self.portal._state.heads += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        if "json" in (self.headers.get("Content-Type") or ""):
            try:
                data = json.loads(raw)
                return data if isinstance(data, dict) else {}
            except ValueError:
                return {}
        return dict(parse_qsl(raw.decode("utf-8", "replace")))

    def _handle(self) -> None:
        portal = self.portal
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        body = self._read_body()
        record = RecordedRequest(self.command, parts.path, query, dict(self.headers), body)
        st = portal._state
        with st.lock:
            st.requests.append(record)
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            if parts.path.rstrip("/") == "/oauth/token":
                if portal.refresh_delay:
                    time.sleep(portal.refresh_delay)  # widens the window in which concurrent refreshes collide
                    if portal.drop_abandoned_refresh and self._hung_up():
                        self.close_connection = True
                        return
                status, payload = portal.standin.token({**query, **{k: str(v) for k, v in body.items()}})
                record.status = status
                if status == 200:
                    portal.rotated.set()
                    if self._after_rotation(json.dumps(payload).encode()):
                        return
                self._send_json(status, payload)
                return
            if parts.path == DOWNLOAD_PATH and self.command == "GET":  # File.download's one-time link
                status, headers, data = portal.standin.files.serve(query)
                record.status = status
                self._send(status, data, headers.pop("Content-Type"), headers)
                return
            fault = portal._next_fault()
            if fault is None and not portal._admit():
                record.status = 503
                self._send_json(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
                return
            if portal.delay:
                self._sleep(portal.delay)
            if fault is not None:
                record.status = self._play(fault)
                return
            status, payload = portal.standin.answer(self.command, parts.path, query, body)
            record.status = status
            self._send_json(status, payload)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            with st.lock:
                st.in_flight -= 1

    def _after_rotation(self, body: bytes) -> bool:
        """Play `after_rotation` on a rotated pair's answer; True if the answer was not sent whole."""
        portal = self.portal
        if portal.after_rotation == "late":
            self._sleep(portal.rotated_delay)
            return False
        if portal.after_rotation == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if portal.after_rotation == "half":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        return False

    def _hung_up(self) -> bool:
        """Whether the client closed its end (a killed process's socket reads as end of file)."""
        try:
            return bool(self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the portal stops, so shutdown never waits on a hang."""
        self.portal._stopping.wait(seconds)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _play(self, fault: Fault) -> int:
        portal = self.portal
        if fault.kind == "raw":
            self._send(fault.status, fault.body, fault.content_type)
            return fault.status
        if fault.kind == "time_limit":
            block = {**time_block(), "operating_reset_at": time.time() + fault.seconds}
            error = {
                "error": "OPERATION_TIME_LIMIT",
                "error_description": "Method is blocked due to operation time limit.",
            }
            self._send_json(429, {**error, "time": block})
            return 429
        if fault.kind == "ok":
            block = {**time_block(), **(fault.time_block or {})}
            self._send_json(200, {"result": fault.result, "time": block})
            return 200
        if fault.kind == "hang":
            self._sleep(fault.seconds)
            self.close_connection = True
            return 0
        if fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return 0
        if fault.kind == "trickle":
            body = json.dumps({"result": {"chat": portal.chats["chat5"]}, "time": time_block()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = max(1, len(body) // 50)
            pause = fault.seconds / max(1, len(body) // step)
            for i in range(0, len(body), step):
                if portal._stopping.is_set():
                    break
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                self._sleep(pause)
            self.close_connection = True
            return 200
        raise AssertionError(f"unknown fault {fault.kind}")


async def rotated(portal: StandInPortal, within: float = 10.0) -> None:
    """Until the token endpoint has rotated a pair (polled: the portal answers in its own threads)."""
    import anyio

    with anyio.fail_after(within):
        while not portal.rotated.is_set():  # noqa: ASYNC110 - set by the portal's thread
            await anyio.sleep(0.005)


@contextmanager
def in_thread(server: T) -> Iterator[T]:
    """`server` (a socketserver on 127.0.0.1) answering in a thread for the block; shut down and joined after it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)  # type: ignore[attr-defined]
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
        thread.join(5)

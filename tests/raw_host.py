"""A loopback server that sends whatever bytes a test tells it to: the hostile upstream of test_hostile (a portal
answering POSTs) and test_get_file (a download host answering GETs).

It binds 127.0.0.1 only, over TLS when given a context, answers each request in its own thread and records what
it was asked; a client hanging up mid-answer (what a capped read does) is not an error here.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MiB = 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    server: RawHost

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, MiB))
        self._respond()

    def do_GET(self) -> None:
        self._respond()

    def _respond(self) -> None:
        with self.server.lock:
            self.server.requests += 1
            self.server.seen.append((self.path, dict(self.headers)))
        try:
            self.server.respond(self)
        except OSError:
            pass  # the client hung up mid-answer: exactly what a capped read does

    def raw(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """One answer, written as is: the status line, the headers given, Content-Length (unless the headers say
        Transfer-Encoding), the body."""
        head = {"Content-Type": self.server.content_type, "Connection": "close", **(headers or {})}
        if "Transfer-Encoding" not in head:
            head.setdefault("Content-Length", str(len(body)))
        lines = [f"HTTP/1.1 {status} Whatever"] + [f"{k}: {v}" for k, v in head.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


Respond = Callable[[Handler], None]


class RawHost(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None, respond: Respond, content_type: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.tls = tls
        self.lock = threading.Lock()
        self.requests = 0
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each request, in order
        self.respond = respond
        self.content_type = content_type  # of an answer whose headers name none

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_address[1]}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused our certificate: that may be the test
        Handler(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

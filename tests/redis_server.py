"""A real `redis-server` for the suite: one per session, on a free 127.0.0.1 port, in a temporary directory.

No persistence (`--save '' --appendonly no`): the tests prove sharing, not durability. Each test gets an empty
database (`redis_url` flushes it). A missing `redis-server` is a failure, not a skip: CI installs it (.ci/run),
and a suite that silently skipped the team tests would prove nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(directory: Path) -> RedisServer:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server (.ci/run installs it)")
    for _ in range(3):  # a free port can be taken between the probe and the bind: try another
        port = free_port()
        with (directory / f"redis-{port}.log").open("wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if _ping(port):
                return RedisServer(port, process)
            time.sleep(0.02)
        process.kill()
        process.wait(5)
    pytest.fail(f"redis-server did not start on a free port; see {directory}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    import redis  # here, not at the top: every pytest process loads this module with the conftest

    with redis.Redis(port=redis_server.port, socket_timeout=5) as client:
        client.flushall()
    return redis_server.url


class SlowProxy:
    """A loopback TCP proxy to Redis that holds each of Redis's replies for `delay` seconds: a far or loaded Redis."""

    def __init__(self, port: int, delay: float) -> None:
        import threading

        self.target, self.delay = port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._threads = threading
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._threads.Thread(target=self._pipe, args=(client, upstream, 0.0), daemon=True).start()
            self._threads.Thread(target=self._pipe, args=(upstream, client, self.delay), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.listener.close()

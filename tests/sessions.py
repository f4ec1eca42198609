"""One server and one SDK session for a test module, as a host keeps one, with each test's own portal behind it.

The SDK's Client compiles a tool's outputSchema once a session (its metaschema check is ~20-100 ms a schema), so
a module that opened a session for each call spent most of its time there. A module imports `anyio_backend`
(module-wide, as its session is), names its fixture `session = module_session()`, and sets `answer` before each
call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp import Client

from b24_mcp import settings
from b24_mcp.server import build_server
from tests.values import webhook_vars

Answer = Callable[[httpx.Request], httpx.Response]


def _no_portal(request: httpx.Request) -> httpx.Response:
    raise AssertionError("the test set no portal behind the module's server")


class Session:
    """The module's SDK session, and what its server's portal answers (the test in progress sets it)."""

    client: Client

    def __init__(self) -> None:
        self.answer: Answer = _no_portal

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return self.answer(request)


@asynccontextmanager
async def serve(mode: str = "legacy") -> AsyncIterator[Session]:
    """The suite's webhook server, its rate limit high enough that a module's calls never wait for a turn."""
    session = Session()
    config = settings.load(webhook_vars(B24_RATE_BURST="50", B24_RATE_LIMIT="1000"))
    async with Client(build_server(config, transport=httpx.MockTransport(session)), mode=mode) as client:
        session.client = client
        yield session


def module_session(mode: str = "legacy") -> Any:
    """The module-scoped `session` fixture, in the SDK Client's `mode`."""

    @pytest.fixture(scope="module")
    async def session() -> AsyncIterator[Session]:
        async with serve(mode) as session:
            yield session

    return session


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"

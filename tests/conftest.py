"""Shared fixtures: anyio on asyncio, the test CA, the stand-in portal over HTTP and HTTPS, an environment without
B24_* variables, and a Redis server for the team tests.

What the fixtures need is imported inside them: every pytest process loads this file first, the xdist controller
(which runs no test) included, so what it imports at the top delays every worker's start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.redis_server import redis_server, redis_url  # noqa: F401 - the Redis fixtures of the team tests
from tests.values import CODE, TOKEN

if TYPE_CHECKING:
    import trustme

    from tests.portal import StandInPortal


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_b24_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without its B24_* variables: a developer's own settings must not reach a test."""
    for name in [k for k in os.environ if k.startswith("B24_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that signs the stand-in portal's certificate."""
    import trustme

    return trustme.CA()


@pytest.fixture
def https_portal(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInPortal]:
    """The stand-in portal over HTTPS, with the suite's webhook code and bot token.

    This process trusts it the way a user trusts an on-premise portal's CA: SSL_CERT_FILE, which the server's
    HTTP client reads when it is made. Subprocesses get their own environment (see tests/e2e/helpers.py).
    """
    from tests.portal import StandInPortal

    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN) as p:
        monkeypatch.setenv("SSL_CERT_FILE", str(p.ca_pem_path))
        yield p


@pytest.fixture
def http_portal() -> Iterator[StandInPortal]:
    """The stand-in portal over plain HTTP on loopback (allowed for 127.0.0.1 only)."""
    from tests.portal import StandInPortal

    with StandInPortal(webhook_code=CODE, bot_token=TOKEN) as p:
        yield p

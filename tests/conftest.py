"""Shared fixtures: anyio on asyncio, the test CA, and the stand-in portal over HTTP and HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from tests.portal import StandInPortal
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures of the team tests (issue 13)
from tests.values import CODE, TOKEN


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that signs the stand-in portal's certificate."""
    return trustme.CA()


@pytest.fixture
def https_portal(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInPortal]:
    """The stand-in portal over HTTPS, with the suite's webhook code and bot token.

    This process trusts it the way a user trusts an on-premise portal's CA: SSL_CERT_FILE, which the server's
    HTTP client reads when it is made. Subprocesses get their own environment (see tests/e2e/helpers.py).
    """
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN) as p:
        monkeypatch.setenv("SSL_CERT_FILE", str(p.ca_pem_path))
        yield p


@pytest.fixture
def http_portal() -> Iterator[StandInPortal]:
    """The stand-in portal over plain HTTP on loopback (allowed for 127.0.0.1 only)."""
    with StandInPortal(webhook_code=CODE, bot_token=TOKEN) as p:
        yield p

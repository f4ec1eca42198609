"""Shared fixtures: anyio on asyncio, the test CA, and the stand-in portal over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from tests.e2e import CODE, TOKEN
from tests.portal import StandInPortal


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that signs the stand-in portal's certificate (handed to servers as SSL_CERT_FILE)."""
    return trustme.CA()


@pytest.fixture
def https_portal(ca: trustme.CA) -> Iterator[StandInPortal]:
    """The stand-in portal over HTTPS, with the test suite's webhook code and bot token."""
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN) as p:
        yield p

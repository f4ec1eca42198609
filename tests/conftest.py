"""Shared fixtures: anyio on asyncio, and the test CA for the stand-in portal's HTTPS."""

from __future__ import annotations

import pytest
import trustme


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that signs the stand-in portal's certificate (handed to servers as SSL_CERT_FILE)."""
    return trustme.CA()

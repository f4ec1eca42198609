"""Shared fixtures: anyio on asyncio, and settings for a webhook portal that tests can point anywhere."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

"""Helpers for end-to-end tests: the real server as a subprocess, driven by the SDK's client over stdio.

The server's stderr goes to a file so tests can read what it logged (and prove no secret is in it). The SDK
passes the parent's environment to neither the server nor Inspector, so everything is given explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.portal import StandInPortal
from tests.values import ROOT, webhook_vars


def clean_env(**env: str | None) -> dict[str, str]:
    """A clean environment for a subprocess: PATH/HOME and the given variables only (None drops one)."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "SYSTEMROOT") if k in os.environ}
    base["PYTHONUNBUFFERED"] = "1"
    return {**base, **{k: v for k, v in env.items() if v is not None}}


def webhook_env(portal: StandInPortal, **extra: str | None) -> dict[str, str]:
    """The server's environment for a webhook against `portal`; `extra` overrides or (None) drops a variable."""
    base: dict[str, str | None] = {
        **webhook_vars(portal.webhook_url),
        "SSL_CERT_FILE": str(portal.ca_pem_path) if portal.ca_pem_path else None,
        "B24_LOG_LEVEL": "DEBUG",  # the most the server ever logs: all of it must be free of secrets
    }
    return clean_env(**{**base, **extra})


@asynccontextmanager
async def spawned(
    env: dict[str, str], stderr: Path, *, mode: str = "legacy", args: tuple[str, ...] = ()
) -> AsyncIterator[Client]:
    """`python -m b24_mcp` over stdio, exactly as a host would start it."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "b24_mcp", *args], env=env, cwd=str(ROOT))
    with stderr.open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode, read_timeout_seconds=60) as client:
            yield client


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)

"""Helpers for end-to-end tests: the real server as a subprocess, driven by the SDK's client over stdio.

The server's stderr goes to a file so tests can read what it logged (and prove no secret is in it). The SDK
passes the parent's environment to neither the server nor Inspector, so everything is given explicitly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.portal import StandInPortal
from tests.values import ROOT, oauth_vars, webhook_vars


def clean_env(**env: str | None) -> dict[str, str]:
    """A clean environment for a subprocess: PATH/HOME and the given variables only (None drops one)."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "SYSTEMROOT") if k in os.environ}
    base["PYTHONUNBUFFERED"] = "1"
    return {**base, **{k: v for k, v in env.items() if v is not None}}


def oauth_env(portal: StandInPortal, token_file: Path, **extra: str | None) -> dict[str, str]:
    """The server's environment for OAuth against `portal` (its token endpoint too), at DEBUG; `extra` overrides."""
    base: dict[str, str | None] = {
        **oauth_vars(portal.base_url, B24_TOKEN_FILE=str(token_file)),
        "B24_LOG_LEVEL": "DEBUG",  # the most the server ever logs: all of it must be free of secrets
    }
    return clean_env(**{**base, **extra})


def webhook_env(portal: StandInPortal, **extra: str | None) -> dict[str, str]:
    """The server's environment for a webhook against `portal`; `extra` overrides or (None) drops a variable."""
    base: dict[str, str | None] = {
        **webhook_vars(portal.webhook_url),
        "SSL_CERT_FILE": str(portal.ca_pem_path) if portal.ca_pem_path else None,
        "B24_LOG_LEVEL": "DEBUG",  # the most the server ever logs: all of it must be free of secrets
    }
    return clean_env(**{**base, **extra})


@asynccontextmanager
async def spawned(env: dict[str, str], stderr: Path, *, mode: str = "legacy") -> AsyncIterator[Client]:
    """`python -m b24_mcp` over stdio, exactly as a host would start it."""
    async with spawned_together(env, stderr, mode=mode) as (client,):
        yield client


@asynccontextmanager
async def spawned_together(env: dict[str, str], *stderrs: Path, mode: str = "legacy") -> AsyncIterator[list[Client]]:
    """As many `python -m b24_mcp` over stdio as `stderrs`, all started before any is asked to initialize: each
    start-up is ~1 s of CPU (the SDK's import), and side by side they overlap instead of queueing."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "b24_mcp"], env=env, cwd=str(ROOT))
    async with AsyncExitStack() as stack:
        logs = [stack.enter_context(stderr.open("a")) for stderr in stderrs]
        streams = [await stack.enter_async_context(stdio_client(params, errlog=log)) for log in logs]
        yield [
            await stack.enter_async_context(Client(_opened(pair), mode=mode, read_timeout_seconds=60))
            for pair in streams
        ]


@asynccontextmanager
async def _opened(streams: Any) -> AsyncIterator[Any]:
    """A transport whose streams are already open (its process already started)."""
    yield streams


def kill_left(procs: Iterable[subprocess.Popen[Any]]) -> None:
    """Kill whichever of `procs` still runs: a test that failed half-way must not leave servers behind."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


NPM_QUIET = ["--no-save", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]


def npm_package(name: str, version: str, skip_reason: str) -> tuple[str, Path]:
    """`node` and the folder where `name@version` is installed: once per machine (atomically, into a cache, so
    later runs skip npm and its registry), not at every call as `npx -y` would. Skips with `skip_reason` when
    node or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        pytest.skip(skip_reason)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "b24-mcp-tests"
    folder = cache / f"{name.rsplit('/', 1)[-1]}-{version}"
    if not (folder / "node_modules" / name / "package.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="npm-", dir=cache))
        install = [npm, "install", "--prefix", str(staging), *NPM_QUIET, f"{name}@{version}"]
        subprocess.run(install, check=True, capture_output=True, timeout=600)
        try:
            staging.rename(folder)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return node, folder / "node_modules" / name

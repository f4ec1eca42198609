"""The MCP Bundle with the official CLI (`@anthropic-ai/mcpb`, pinned): `mcpb pack` validates manifest.json and
makes b24-mcp.mcpb without the tests, the bench or a virtualenv, and the packed bundle runs as a host would start
it (its mcp_config, substituted by the CLI package's own code, with `--demo` appended) and serves over stdio.

Like the Inspector's tests, the pinned package is installed once into a cache directory and its CLI run with
node directly (what `npx -y @anthropic-ai/mcpb@VERSION` runs, without npx resolving it on every call).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from b24_mcp.check import spawn_env
from b24_mcp.settings import DEMO_NOTICE
from b24_mcp.tools.registry import TOOLS
from tests.e2e.helpers import clean_env, npm_package, text_of
from tests.test_ship import MCPB_VERSION
from tests.values import ROOT

pytestmark = pytest.mark.e2e

MCPB = "@anthropic-ai/mcpb"
VERSION = MCPB_VERSION  # also in the README's pack command


@pytest.fixture(scope="session")
def cli() -> tuple[str, Path]:
    """node and the pinned CLI's entry point, installed once into a cache."""
    node, package = npm_package(
        MCPB, VERSION, "the MCP Bundle CLI needs Node and npm, and neither is on PATH (.ci/run installs them)"
    )
    return node, package / "dist" / "cli" / "cli.js"  # the package's "bin"


def mcpb(cli: tuple[str, Path], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    node, entry = cli
    return subprocess.run([node, str(entry), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def host_config(cli: tuple[str, Path], tmp_path: Path) -> dict[str, Any]:
    """Pack the repo, check what the bundle holds, unpack it as a host installs it, and return its mcp_config with
    ${__dirname} and ${user_config.*} substituted by the CLI package's own code (the host's side)."""
    node, entry = cli
    bundle = tmp_path / "b24-mcp.mcpb"
    done = mcpb(cli, "pack", ".", str(bundle))  # which validates manifest.json first, as `mcpb validate` does
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Manifest schema validation passes!" in done.stdout and "ERROR" not in done.stdout
    names = zipfile.ZipFile(bundle).namelist()
    assert {"manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "b24_mcp/server.py"} <= set(names)
    assert not [n for n in names if n.split("/")[0] in {"tests", "bench", ".venv", ".ci", "dist", ".git"}], names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".mcpb")]

    unpacked = tmp_path / "installed"
    zipfile.ZipFile(bundle).extractall(unpacked)
    shared = (entry.parent.parent / "shared" / "config.js").as_uri()  # dist/cli/cli.js -> dist/shared/config.js
    script = (
        f"import {{ getMcpConfigForManifest }} from {json.dumps(shared)};\n"
        f"const manifest = {(unpacked / 'manifest.json').read_text()};\n"
        f"const config = await getMcpConfigForManifest({{ manifest, extensionPath: {json.dumps(str(unpacked))},\n"
        "  systemDirs: {}, userConfig: { bot_id: '456' }, pathSeparator: '/' });\n"
        "console.log(JSON.stringify(config));"
    )
    made = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    config: dict[str, Any] = json.loads(made.stdout)
    assert "${" not in json.dumps(config), config  # every placeholder filled: defaults or the user's values
    return config


def host_env(manifest_env: dict[str, str]) -> dict[str, str]:
    """What a host starts the bundle with: the user's TLS and proxy settings (check's PASS_THROUGH) and uv's cache,
    which uv needs to install the bundle's dependencies (behind a private CA, say), then the manifest's env. Not the
    user's own B24_* settings: the manifest's env is the whole configuration."""
    passed = {k: v for k, v in spawn_env(os.environ).items() if not k.startswith("B24_")}
    cache = {"UV_CACHE_DIR": os.environ["UV_CACHE_DIR"]} if "UV_CACHE_DIR" in os.environ else {}
    return clean_env(**passed, **cache, **manifest_env)


@pytest.mark.anyio
async def test_pack_leaves_out_tests_and_venv_and_the_bundle_runs(cli: tuple[str, Path], tmp_path: Path) -> None:
    config = host_config(cli, tmp_path)
    # Started exactly as the host would start it, with --demo appended: uv installs the bundle's environment
    # from its uv.lock on this first launch, then a stdio session lists the tools and calls one.
    command = shutil.which(config["command"]) or config["command"]
    params = StdioServerParameters(
        command=command, args=[*config["args"], "--demo"], env=host_env(config["env"]), cwd=str(tmp_path)
    )
    with (tmp_path / "stderr.log").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="auto", read_timeout_seconds=300) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert [t.name for t in tools] == [spec.name for spec in TOOLS]
    assert not result.is_error and text_of(result).startswith(DEMO_NOTICE), (tmp_path / "stderr.log").read_text()

"""The MCP Bundle with the official CLI (`@anthropic-ai/mcpb`, pinned): manifest.json validates, `mcpb pack`
makes b24-mcp.mcpb without the tests, the bench or a virtualenv, and the packed bundle runs as a host would start
it (its mcp_config, substituted by the CLI package's own code, with `check --demo` appended).

Like the Inspector's tests, the pinned package is installed once into a cache directory and its CLI run with
node directly (what `npx -y @anthropic-ai/mcpb@VERSION` runs, without npx resolving it on every call).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.e2e.helpers import clean_env, npm_package
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


def test_manifest_validates_with_the_official_cli(cli: tuple[str, Path]) -> None:
    done = mcpb(cli, "validate", "manifest.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Manifest schema validation passes!" in done.stdout and "ERROR" not in done.stdout


def test_pack_leaves_out_tests_and_venv_and_the_bundle_runs(cli: tuple[str, Path], tmp_path: Path) -> None:
    node, entry = cli
    bundle = tmp_path / "b24-mcp.mcpb"
    done = mcpb(cli, "pack", ".", str(bundle))
    assert done.returncode == 0, done.stdout + done.stderr
    names = zipfile.ZipFile(bundle).namelist()
    assert {"manifest.json", "icon.png", "pyproject.toml", "uv.lock", "README.md", "b24_mcp/server.py"} <= set(names)
    assert not [n for n in names if n.split("/")[0] in {"tests", "bench", ".venv", ".ci", "dist", ".git"}], names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".mcpb")]

    unpacked = tmp_path / "installed"
    zipfile.ZipFile(bundle).extractall(unpacked)
    # The host's side: mcp_config with ${__dirname} and ${user_config.*} substituted by the CLI package's code.
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
    config = json.loads(made.stdout)
    assert "${" not in json.dumps(config), config  # every placeholder filled: defaults or the user's values
    command = [shutil.which(config["command"]) or config["command"], *config["args"], "check", "--demo"]
    ran = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env(**config["env"])
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Verdict: all good" in ran.stdout

"""How the package hangs together: what the stdio server loads at start-up, measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.values import ROOT, webhook_vars

START_UP = """
import json, sys
from b24_mcp import cli, settings
from b24_mcp.server import build_server
build_server(settings.load({env!r}))
libraries, ours = ("httpx", "redis", "jwt", "pypdf", "sqlite3"), ("b24_mcp.bitrix24.models", "b24_mcp.tools.registry")
print(json.dumps(sorted(n for n in sys.modules if n.split(".")[0] in libraries or n.startswith(ours))))
"""


def test_the_stdio_server_is_built_without_its_tools_httpx_pypdf_or_the_team_libraries() -> None:
    # A host launches every configured server at once: what the first tools/list does not need stays unloaded
    # (the SDK itself loads uvicorn). tools/list is the committed contract; the tools and their models load after.
    out = subprocess.run(
        [sys.executable, "-c", START_UP.format(env=webhook_vars())], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []

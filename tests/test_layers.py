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
assert cli.options([]).command is None
for env in {envs!r}:
    build_server(settings.load(env))
libraries = ("httpx", "redis", "jwt", "pypdf", "sqlite3", "argparse")
ours = ("b24_mcp.bitrix24", "b24_mcp.tools.registry", "b24_mcp.tools.spec", "b24_mcp.command_line", "b24_mcp.team")
print(json.dumps(sorted(n for n in sys.modules if n.split(".")[0] in libraries or n.startswith(ours))))
"""


def test_the_stdio_server_is_built_without_its_tools_httpx_pypdf_argparse_or_the_team_libraries() -> None:
    # A host launches every configured server at once: what the first tools/list does not need stays unloaded
    # (the SDK itself loads uvicorn). tools/list is the committed contract; the tools and their models load after;
    # how a call runs loads with them (tools.spec); a host's command line (`b24-mcp`) is read without argparse; a
    # desktop start never loads the team's settings; B24_TOOLS chooses from the contract too. One
    # interpreter builds both servers: a fresh one costs a second of CPU here.
    envs = [webhook_vars(), webhook_vars(B24_TOOLS="get_chat,get_messages")]
    out = subprocess.run([sys.executable, "-c", START_UP.format(envs=envs)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []

"""The MCP Inspector's CLI as a second, independent client: listing (with --strict schema portability),
calling the tool on the demo portal, an isError call, the chat resource, and the Streamable HTTP transport.

It needs Node and the npm registry (`.ci/run` makes sure of Node). The first run downloads the pinned
Inspector into npx's cache, so the timeouts are generous; they bound the test, they do not time the server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e import ROOT, server_env

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
SERVER = [sys.executable, "-m", "b24_mcp", "--demo"]


def inspector(*args: str) -> subprocess.CompletedProcess[str]:
    npx = shutil.which("npx")
    assert npx, "these tests need Node's npx (.ci/run installs Node when it is missing)"
    return subprocess.run(
        [npx, "-y", INSPECTOR, "--cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**server_env(), "npm_config_update_notifier": "false", "npm_config_loglevel": "error"},
    )


def test_tools_list_is_portable_under_strict() -> None:
    done = inspector(*SERVER, "--method", "tools/list", "--strict")
    assert done.returncode == 0, done.stderr
    (tool,) = json.loads(done.stdout)["tools"]
    assert tool["name"] == "get_chat"
    assert tool["annotations"]["readOnlyHint"] is True
    assert "0 errors, 0 warnings" in done.stderr or "warning" not in done.stderr.lower(), done.stderr


def test_tools_call_on_the_demo_portal() -> None:
    done = inspector(
        *SERVER, "--method", "tools/call", "--tool-name", "get_chat", "--tool-arg", "dialogId=chat5", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert result["structuredContent"]["dialogId"] == "chat5"
    assert result["structuredContent"]["name"] == "Support Chat"
    assert not result.get("isError")


def test_tools_call_error_is_reported_as_is_error() -> None:
    done = inspector(
        *SERVER, "--method", "tools/call", "--tool-name", "get_chat", "--tool-arg", "dialogId=chat7", "--format", "json"
    )
    assert done.returncode == 5  # the Inspector's exit code for a tool that returned isError
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert result["isError"] is True and "ACCESS_DENIED" in result["content"][0]["text"]


def test_resource_template_read() -> None:
    done = inspector(*SERVER, "--method", "resources/read", "--uri", "bitrix24://chat/chat5")
    assert done.returncode == 0, done.stderr
    contents = json.loads(done.stdout)["contents"][0]
    assert contents["mimeType"] == "application/json"
    assert json.loads(contents["text"])["id"] == 5


@pytest.fixture
def http_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*SERVER, "--transport", "streamable-http", "--port", str(port)],
        env=server_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def test_streamable_http_transport(http_server: str) -> None:
    done = inspector(
        # The Inspector turns dialogId=1 into a JSON number, which get_chat refuses (a bare number is ambiguous
        # for a model: chat 1 or user 1?); quoting passes the string.
        http_server,
        "--method",
        "tools/call",
        "--tool-name",
        "get_chat",
        "--tool-arg",
        'dialogId="1"',
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert result["structuredContent"]["messageType"] == "P"

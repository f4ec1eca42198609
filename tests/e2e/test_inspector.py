"""The MCP Inspector's CLI as a second, independent client, over both transports: an isError call over stdio
(a server process per call), and over Streamable HTTP (one server for the module) the listing with --strict
schema portability, a call on the demo portal, and the chat resource.

It needs Node.js and npm (`.ci/run` makes sure of Node); without them these tests, and only these, are skipped,
saying so. The Inspector declares Node 22.19 or newer (its package.json `engines`). The pinned Inspector is
installed once into a cache directory and its launcher run with node directly: `npx -y` re-resolved the package
on every call, about 1 s of each (and the whole download on a cold cache, which is what once made the first of
these tests take 16 s).
The timeouts bound the tests; they do not time the server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.helpers import clean_env, kill_left, npm_package
from tests.values import ROOT

pytestmark = pytest.mark.e2e

INSPECTOR = "@modelcontextprotocol/inspector"
VERSION = "2.12.0"
SERVER = [sys.executable, "-m", "b24_mcp", "--demo"]
NODE_VERSION = "22.19"  # what the pinned Inspector's package.json declares (engines.node >= 22.19.0)
NO_NODE = (
    f"the MCP Inspector tests need Node.js (the Inspector declares {NODE_VERSION} or newer) and npm on PATH; "
    "the rest of the suite does not"
)


def test_without_node_the_inspector_tests_skip_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(
        pytest.skip.Exception, match=rf"need Node\.js \(the Inspector declares {NODE_VERSION} or newer\)"
    ):
        npm_package(INSPECTOR, VERSION, NO_NODE)


@pytest.fixture(scope="session")
def launcher() -> list[str]:
    """`node <the Inspector's launcher>`, the pinned Inspector installed once into a cache (not `npx -y` each time)."""
    node, package = npm_package(INSPECTOR, VERSION, NO_NODE)
    return [node, str(package / "clients" / "launcher" / "build" / "index.js")]


TOOL_CALLS: list[tuple[str, str, Callable[[dict[str, Any]], bool]]] = [
    ("get_chat", "dialogId=chat5", lambda sc: sc["name"] == "Support Chat"),
    ("get_chat_members", "dialogId=chat5", lambda sc: len(sc["users"]) == 3),
    ("get_messages", "dialogId=chat5", lambda sc: sc["messages"][-1]["id"] == 789),
    ("get_message", "messageId=784", lambda sc: sc["message"]["id"] == 784),
]


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """`b24-mcp --demo --transport streamable-http` on a free loopback port; its /mcp URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*SERVER, "--transport", "streamable-http", "--port", str(port)],
        env=clean_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def inspected(launcher: list[str], http_server: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every Inspector run of this module, by name, started together: each is ~0.7 s of node start-up, and run
    side by side they overlap the other tests' waits instead of queueing. Each test reads its own run."""
    runs = {
        "stdio error": [*SERVER, "--method", "tools/call", "--tool-name", "get_chat", "--tool-arg", "dialogId=chat7",
                        "--format", "json"],
        "tools/list": [http_server, "--method", "tools/list", "--strict"],
        **{
            tool: [http_server, "--method", "tools/call", "--tool-name", tool, "--tool-arg", arg, "--format", "json"]
            for tool, arg, _ in TOOL_CALLS
        },
        "resources/read": [http_server, "--method", "resources/read", "--uri", "bitrix24://chat/chat5"],
    }  # fmt: skip
    started = {
        name: subprocess.Popen(
            [*launcher, "--cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=clean_env(),
        )
        for name, args in runs.items()
    }
    done: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for name, proc in started.items():
            out, err = proc.communicate(timeout=120)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        kill_left(started.values())
    return done


def test_tools_call_error_over_stdio_is_reported_as_is_error(inspected: dict[str, Any]) -> None:
    done = inspected["stdio error"]
    assert done.returncode == 5, done.stderr  # the Inspector's exit code for a tool that returned isError
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert result["isError"] is True and "ACCESS_DENIED" in result["content"][0]["text"]


def test_tools_list_is_portable_under_strict(inspected: dict[str, Any]) -> None:
    done = inspected["tools/list"]
    assert done.returncode == 0, done.stderr
    tools = json.loads(done.stdout)["tools"]
    assert [t["name"] for t in tools] == ["get_chat", "get_chat_members", "get_messages", "get_message"]
    assert all(t["annotations"]["readOnlyHint"] is True for t in tools)
    assert "0 errors, 0 warnings" in done.stderr or "warning" not in done.stderr.lower(), done.stderr


@pytest.mark.parametrize(("tool", "arg", "check"), TOOL_CALLS, ids=[tool for tool, _, _ in TOOL_CALLS])
def test_tools_call_on_the_demo_portal(
    inspected: dict[str, Any], tool: str, arg: str, check: Callable[[dict[str, Any]], bool]
) -> None:
    done = inspected[tool]
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert not result.get("isError"), result
    assert check(result["structuredContent"])


def test_resource_template_read(inspected: dict[str, Any]) -> None:
    done = inspected["resources/read"]
    assert done.returncode == 0, done.stderr
    contents = json.loads(done.stdout)["contents"][0]
    assert contents["mimeType"] == "application/json"
    assert json.loads(contents["text"])["id"] == 5

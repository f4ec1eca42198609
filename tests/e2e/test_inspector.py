"""The MCP Inspector's CLI as a second, independent client, over both transports: an isError call over stdio
(a server process of its own), and over Streamable HTTP (one server for the module) the listing with --strict
schema portability, a call of each tool on the demo portal, and the chat resource. That HTTP server binds
127.0.0.2, so it also shows the bind policy on a real socket (a foreign Host or Origin refused) and, when the
module ends, Ctrl-C ending it cleanly.

It needs Node.js and npm (`.ci/run` makes sure of Node); without them these tests, and only these, are skipped,
saying so. The Inspector declares Node 22.19 or newer (its package.json `engines`). The pinned Inspector is
installed once into a cache directory and run with node directly: `npx -y` re-resolved the package on every call,
about 1 s of each (and the whole download on a cold cache, which is what once made the first of these tests take
16 s). The stdio run goes through the Inspector's launcher, exit code and all. The HTTP runs share one node
process that calls the CLI's `runCli(argv)` once per run, which is all the launcher does with `--cli`: loading
the 900 KB CLI is ~0.6 s of CPU a process, and each run after the first costs ~0.03 s.
The timeouts bound the tests; they do not time the server.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from b24_mcp.tools.registry import TOOLS
from tests.e2e.helpers import clean_env, kill_left, npm_package
from tests.values import HTTP_HEADERS, ROOT, initialize

pytestmark = pytest.mark.e2e

INSPECTOR = "@modelcontextprotocol/inspector"
VERSION = "2.12.0"
SERVER = [sys.executable, "-m", "b24_mcp", "--demo"]
HOST = "127.0.0.2"  # loopback, but not the address the SDK protects by default
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
def inspector() -> tuple[str, Path]:
    """`node` and the pinned Inspector's folder, installed once into a cache (not `npx -y` each time)."""
    return npm_package(INSPECTOR, VERSION, NO_NODE)


# Each run's outcome in one node process: {"exit": the code the launcher would exit with, "error": its message}.
# The launcher maps a CliExitCodeError to its exitCode (handleError); anything else to 1.
RUN_ALL = """
const [cli, runs] = [process.argv[1], JSON.parse(process.argv[2])];
const { runCli } = await import(cli);
const outcomes = await Promise.all(Object.entries(runs).map(([name, argv]) =>
  runCli(["node", "inspector-cli", ...argv]).then(
    () => [name, { exit: 0 }],
    (err) => [name, { exit: err.exitCode ?? 1, error: String(err.message ?? err) }])));
console.log(JSON.stringify(Object.fromEntries(outcomes)));
"""


TOOL_CALLS: list[tuple[str, str, Callable[[dict[str, Any]], bool]]] = [
    ("get_chat", "dialogId=chat5", lambda sc: sc["name"] == "Support Chat"),
    ("get_chat_members", "dialogId=chat5", lambda sc: len(sc["users"]) == 3),
    ("get_messages", "dialogId=chat5", lambda sc: sc["messages"][-1]["id"] == 789),
    ("get_message", "messageId=784", lambda sc: sc["message"]["id"] == 784),
    ("search_messages", "query=export", lambda sc: 789 not in [h["messageId"] for h in sc["hits"]] and sc["hits"]),
]


FILES_OPENED = {"get_file image": 140, "get_file pdf": 142}  # the demo's screenshot and PDF in chat12


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`b24-mcp --demo --transport streamable-http` on 127.0.0.2, a loopback address the SDK alone leaves without
    Host and Origin checks; its /mcp URL. Ended with Ctrl-C, as a user ends it: exit 130, one line on stderr saying
    where it served, no traceback, and nothing at all on stdout."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    logs = tmp_path_factory.mktemp("http-server")
    with (logs / "stdout").open("wb") as stdout, (logs / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [*SERVER, "--transport", "streamable-http", "--host", HOST, "--port", str(port)],
            env=clean_env(),
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
        )
    url = f"http://{HOST}:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the server exited with {proc.returncode}: {(logs / 'stderr').read_text()}"
            assert time.monotonic() < deadline, f"nothing listened on {HOST}:{port} within 60 s"
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
        if sys.platform != "win32":
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 130
            said = (logs / "stderr").read_text()
            assert said.count(f"b24-mcp: serving MCP over Streamable HTTP at {url}\n") == 1, said
            assert "Traceback" not in said
            assert (logs / "stdout").read_bytes() == b""  # over HTTP, stdout carries nothing at all
    finally:
        kill_left([proc])


@dataclass
class Inspected:
    """What the Inspector printed for the stdio run, and each HTTP run's outcome and result (its --output file)."""

    stdio: subprocess.CompletedProcess[str]
    outcomes: dict[str, dict[str, Any]]
    results: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def inspected(inspector: tuple[str, Path], http_server: str, tmp_path_factory: pytest.TempPathFactory) -> Inspected:
    """Every Inspector run of this module, started together: the stdio run through the launcher, the HTTP runs
    side by side in one node process. Each test reads its own run."""
    node, package = inspector
    out = tmp_path_factory.mktemp("inspector")
    stdio = [*SERVER, "--method", "tools/call", "--tool-name", "get_chat", "--tool-arg", "dialogId=chat7",
             "--format", "json"]  # fmt: skip
    http = {
        "tools/list": [http_server, "--method", "tools/list", "--strict"],
        **{
            tool: [http_server, "--method", "tools/call", "--tool-name", tool, "--tool-arg", arg]
            for tool, arg, _ in TOOL_CALLS
        },
        **{
            name: [http_server, "--method", "tools/call", "--tool-name", "get_file", "--tool-arg", f"fileId={file_id}"]
            for name, file_id in FILES_OPENED.items()
        },
        "resources/read": [http_server, "--method", "resources/read", "--uri", "bitrix24://chat/chat5"],
    }
    files = {name: out / f"{name.replace('/', '-')}.json" for name in http}
    runs = {name: [*argv, "--output", str(files[name])] for name, argv in http.items()}
    launcher = package / "clients" / "launcher" / "build" / "index.js"
    cli = (package / "clients" / "cli" / "build" / "index.js").as_uri()
    commands = [
        [node, str(launcher), "--cli", *stdio],
        [node, "--input-type=module", "-e", RUN_ALL, cli, json.dumps(runs)],
    ]
    env = clean_env(HOME=str(out))  # the Inspector keeps its storage under HOME: the test's, not the user's
    started = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        for command in commands
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in started]
        done = [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(started, outputs, strict=True)]
    finally:
        kill_left(started)
    assert done[1].returncode == 0, done[1].stderr
    results = {name: json.loads(file.read_text()) for name, file in files.items() if file.exists()}
    return Inspected(done[0], json.loads(done[1].stdout.splitlines()[-1]), results, done[1].stderr)


def test_tools_call_error_over_stdio_is_reported_as_is_error(inspected: Inspected) -> None:
    done = inspected.stdio
    assert done.returncode == 5, done.stderr  # the Inspector's exit code for a tool that returned isError
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert result["isError"] is True and "ACCESS_DENIED" in result["content"][0]["text"]


def test_tools_list_is_portable_under_strict(inspected: Inspected) -> None:
    assert inspected.outcomes["tools/list"] == {"exit": 0}, inspected.stderr  # 6 for an error-severity problem
    tools = inspected.results["tools/list"]["tools"]
    assert [t["name"] for t in tools] == [spec.name for spec in TOOLS]
    assert all(t["annotations"]["readOnlyHint"] is True for t in tools)
    assert "0 errors, 0 warnings" in inspected.stderr or "warning" not in inspected.stderr.lower(), inspected.stderr


@pytest.mark.parametrize(("tool", "arg", "check"), TOOL_CALLS, ids=[tool for tool, _, _ in TOOL_CALLS])
def test_tools_call_on_the_demo_portal(
    inspected: Inspected, tool: str, arg: str, check: Callable[[dict[str, Any]], bool]
) -> None:
    assert inspected.outcomes[tool] == {"exit": 0}, inspected.stderr
    result = inspected.results[tool]
    assert not result.get("isError"), result
    assert check(result["structuredContent"])


def test_the_inspector_opens_an_image_and_a_pdf_from_the_demo(inspected: Inspected) -> None:
    for name in FILES_OPENED:
        assert inspected.outcomes[name] == {"exit": 0}, inspected.stderr
    image, pdf = inspected.results["get_file image"], inspected.results["get_file pdf"]
    blocks = {block["type"]: block for block in image["content"]}
    assert blocks["image"]["mimeType"] == "image/png"
    assert base64.b64decode(blocks["image"]["data"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert image["structuredContent"]["readAs"] == "image" and not image.get("isError")
    assert pdf["structuredContent"]["readAs"] == "pdf" and pdf["structuredContent"]["pdfPages"] == 2
    assert "> Release 4.2 checklist: staging build by Thursday noon." in pdf["content"][0]["text"]


def test_a_foreign_host_or_origin_is_refused_on_another_loopback_address(http_server: str) -> None:
    """The bind policy (test_transport's table) on a real socket: the Inspector above came in with a good Host;
    a DNS-rebinding page's Host, or a foreign Origin, is turned away with what the SDK answers."""
    good = {**HTTP_HEADERS, "Host": http_server.split("/")[2]}
    with httpx.Client(timeout=10, trust_env=False) as http:
        init = http.post(http_server, json=initialize("raw"), headers=good)
        assert init.status_code == 200, init.text
        assert init.json()["result"]["serverInfo"]["name"] == "b24-mcp"
        rebound = http.post(http_server, json=initialize("raw"), headers={**HTTP_HEADERS, "Host": "evil.example.com"})
        assert (rebound.status_code, rebound.text) == (421, "Invalid Host header")
        foreign = http.post(http_server, json=initialize("raw"), headers={**good, "Origin": "http://evil.example.com"})
        assert (foreign.status_code, foreign.text) == (403, "Invalid Origin header")


def test_resource_template_read(inspected: Inspected) -> None:
    assert inspected.outcomes["resources/read"] == {"exit": 0}, inspected.stderr
    contents = inspected.results["resources/read"]["contents"][0]
    assert contents["mimeType"] == "application/json"
    assert json.loads(contents["text"])["id"] == 5

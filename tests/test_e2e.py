"""End to end: `python -m b24_mcp` as a subprocess, the SDK's Client over stdio, a stand-in portal on loopback.

Each test counts what the stand-in portal received, so "nothing was sent" and "retried twice" are facts, not
assumptions. The portal runs over plain HTTP and over HTTPS with a test CA handed to the server through
SSL_CERT_FILE, the way an on-premise portal with an internal CA is reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
import trustme

from tests.e2e import CODE, ROOT, TOKEN, server_env, spawned, text_of, webhook_env
from tests.portal import Fault, StandInPortal

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["http", "https"])
def portal(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[StandInPortal]:
    with StandInPortal(tls_ca=ca if request.param == "https" else None, webhook_code=CODE, bot_token=TOKEN) as p:
        yield p


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert CODE not in text
        assert TOKEN not in text


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_get_chat_over_stdio(portal: StandInPortal, tmp_path: Path, mode: str) -> None:
    stderr = tmp_path / "stderr.log"
    async with spawned(webhook_env(portal), stderr, mode=mode) as client:
        (tool,) = (await client.list_tools()).tools
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert not result.is_error, text_of(result)
    assert result.structured_content == portal.chats["chat5"]
    jsonschema.validate(result.structured_content, tool.output_schema or {})
    assert "Support Chat (chat5)" in text_of(result)
    (request,) = portal.requests
    assert request.path.endswith(f"/rest/1/{CODE}/imbot.v2.Chat.get")
    assert request.body == {"botId": 456, "botToken": TOKEN, "dialogId": "chat5"}
    assert_no_secret(result.model_dump_json(), stderr.read_text())


async def test_undocumented_fields_and_nulls_pass_through(https_portal: StandInPortal, tmp_path: Path) -> None:
    async with spawned(webhook_env(https_portal), tmp_path / "stderr.log") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat9"})
        personal = await client.call_tool("get_chat", {"dialogId": "1"})
    assert not result.is_error, text_of(result)
    assert result.structured_content == https_portal.chats["chat9"]
    assert not personal.is_error and "personal chat" in text_of(personal)


async def test_each_documented_error_code(https_portal: StandInPortal, tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.log"
    codes = [
        (400, "BOT_TOKEN_NOT_SPECIFIED", "B24_BOT_TOKEN"),
        (400, "BOT_ID_REQUIRED", "B24_BOT_ID"),
        (400, "BOT_NOT_FOUND", "no bot with id 456"),
        (403, "BOT_OWNERSHIP_ERROR", "another application"),
        (403, "ACCESS_DENIED", "not a participant of chat5"),
        (401, "NO_AUTH_FOUND", "B24_WEBHOOK_URL"),
        (403, "insufficient_scope", "imbot"),
        (503, "OVERLOAD_LIMIT", "only Bitrix24 support"),
        (500, "PORTAL_DELETED", "Temporary closure"),
        (400, "SOMETHING_NEW", "SOMETHING_NEW"),
    ]
    https_portal.script(*(Fault.error(status, code, f"{code} said") for status, code, _ in codes))
    async with spawned(webhook_env(https_portal), stderr) as client:
        for status, code, advice in codes:
            result = await client.call_tool("get_chat", {"dialogId": "chat5"})
            text = text_of(result)
            assert result.is_error
            assert f"Bitrix24 error {code} (HTTP {status} from 127.0.0.1:" in text
            assert f"{code} said" in text and advice in text
            assert "Traceback" not in text
            assert_no_secret(text)
    assert https_portal.count() == len(codes)  # none of them retried
    assert_no_secret(stderr.read_text())


async def test_the_portals_own_refusals(https_portal: StandInPortal, tmp_path: Path) -> None:
    async with spawned(webhook_env(https_portal), tmp_path / "stderr.log") as client:
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
        no_bot = await client.call_tool("get_chat", {"dialogId": "chat5", "botId": 999})
        wrong_token = await client.call_tool("get_chat", {"dialogId": "chat5", "botToken": "not-the-token"})
    assert "ACCESS_DENIED" in text_of(denied) and "chat7" in text_of(denied)
    assert "BOT_NOT_FOUND" in text_of(no_bot) and "999" in text_of(no_bot)
    assert "BOT_OWNERSHIP_ERROR" in text_of(wrong_token) and "not-the-token" not in text_of(wrong_token)


async def test_wrong_webhook_code(https_portal: StandInPortal, tmp_path: Path) -> None:
    env = webhook_env(https_portal, B24_WEBHOOK_URL=https_portal.webhook_url.replace(CODE, "wrongCODE9876"))
    stderr = tmp_path / "stderr.log"
    async with spawned(env, stderr) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error and "NO_AUTH_FOUND" in text_of(result)
    assert "wrongCODE9876" not in text_of(result) and "wrongCODE9876" not in stderr.read_text()


async def test_malformed_answers(https_portal: StandInPortal, tmp_path: Path) -> None:
    https_portal.script(
        *[Fault.raw(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")] * 3,
        Fault.raw(200, b'{"result": {"chat": {"id": 5, "dia', "application/json"),
        Fault.raw(200, b"", "application/json"),
        Fault.ok({"unexpected": True}),
    )
    async with spawned(webhook_env(https_portal), tmp_path / "stderr.log") as client:
        html = await client.call_tool("get_chat", {"dialogId": "chat5"})
        truncated = await client.call_tool("get_chat", {"dialogId": "chat5"})
        empty = await client.call_tool("get_chat", {"dialogId": "chat5"})
        no_chat = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert "answered HTTP 502 with an HTML page" in text_of(html)
    assert "not JSON" in text_of(truncated)
    assert "an empty body" in text_of(empty)
    assert "without result.chat" in text_of(no_chat)
    for result in (html, truncated, empty, no_chat):
        assert result.is_error and "127.0.0.1" in text_of(result)
    assert https_portal.count() == 3 + 3  # the 502 page was tried three times, the rest once


async def test_bad_input_sends_nothing(https_portal: StandInPortal, tmp_path: Path) -> None:
    bad: list[dict[str, Any]] = [
        {},
        {"dialogId": "chat 5"},
        {"dialogId": 5},
        {"dialogId": "../../etc/passwd"},
        {"dialogId": "chat5", "botId": -3},
        {"dialogId": "chat5", "botId": "x"},
        {"dialogId": "chat5", "botToken": 42},
        {"dialogId": "chat5", "botToken": "two words"},
    ]
    async with spawned(webhook_env(https_portal), tmp_path / "stderr.log") as client:
        for arguments in bad:
            result = await client.call_tool("get_chat", arguments)
            assert result.is_error, arguments
            assert any(name in text_of(result) for name in ("dialogId", "botId", "botToken"))
    assert https_portal.count() == 0


async def test_tls_without_the_ca_points_at_ssl_cert_file(https_portal: StandInPortal, tmp_path: Path) -> None:
    async with spawned(webhook_env(https_portal, SSL_CERT_FILE=None), tmp_path / "stderr.log") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error and "SSL_CERT_FILE" in text_of(result) and "127.0.0.1" in text_of(result)


async def test_bad_configuration_starts_and_explains(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.log"
    env = server_env(B24_WEBHOOK_URL=f"http://example.com/rest/1/{CODE}/", B24_BOT_TOKEN=TOKEN)
    async with spawned(env, stderr) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["get_chat"]
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error
    assert "B24_WEBHOOK_URL must use https://" in text_of(result)
    logged = stderr.read_text()
    assert logged.count("configuration problem") == 1 and "B24_WEBHOOK_URL" in logged
    assert "Traceback" not in logged
    assert_no_secret(text_of(result), logged)


async def test_demo_mode_needs_no_configuration(tmp_path: Path) -> None:
    async with spawned(server_env(), tmp_path / "stderr.log", args=("--demo",)) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
        resource = await client.read_resource("bitrix24://chat/chat5")
    assert not result.is_error and text_of(result).startswith("DEMO DATA")
    assert denied.is_error and "ACCESS_DENIED" in text_of(denied)
    assert json.loads(resource.contents[0].text) == result.structured_content  # type: ignore[union-attr]


async def test_hanging_portal_ends_within_the_bound(https_portal: StandInPortal, tmp_path: Path) -> None:
    https_portal.script(Fault.hang(20), Fault.hang(20), Fault.hang(20))
    async with spawned(webhook_env(https_portal, B24_TIMEOUT="0.5"), tmp_path / "stderr.log") as client:
        with anyio.fail_after(15):  # a bound for the test itself; the server promises 3 x 0.5 s
            result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert (
        result.is_error
        and "did not answer in time (B24_TIMEOUT=0.5 s a request, 1.5 s for the whole call)" in text_of(result)
    )


def read_lines(stream: Any, n: int, timeout: float) -> list[str]:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(stream.readline() for _ in range(n)), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines


def test_stdout_carries_only_json_rpc(tmp_path: Path) -> None:
    """Raw pipes, no SDK client in between: every byte the server writes to stdout is a JSON-RPC message."""
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_chat", "arguments": {"dialogId": "chat5"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "get_chat", "arguments": {"dialogId": "bad id"}},
        },
    ]
    for env in (server_env(B24_LOG_LEVEL="DEBUG"), server_env(B24_WEBHOOK_URL="nonsense", B24_LOG_LEVEL="DEBUG")):
        args = [sys.executable, "-m", "b24_mcp"] + (["--demo"] if "B24_WEBHOOK_URL" not in env else [])
        proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        proc.stdin.flush()
        lines = read_lines(proc.stdout, 4, timeout=60)  # stdin stays open meanwhile: EOF ends the session
        rest, stderr = proc.communicate(timeout=30)
        assert len(lines) == 4 and all(lines), stderr
        answers = [json.loads(line) for line in lines]  # each line parses: nothing else was printed
        assert all(a["jsonrpc"] == "2.0" for a in answers)
        assert {a["id"] for a in answers} == {1, 2, 3, 4}
        assert rest == ""


def test_console_script_and_module_agree() -> None:
    script = Path(sys.executable).parent / ("b24-mcp.exe" if os.name == "nt" else "b24-mcp")
    a = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    b = subprocess.run([sys.executable, "-m", "b24_mcp", "--version"], capture_output=True, text=True, timeout=30)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and a.stdout.startswith("b24-mcp ")


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_bad_port_is_one_line_naming_the_option(port: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "b24_mcp", "--demo", "--transport", "streamable-http", "--port", port],
        capture_output=True,
        text=True,
        timeout=30,
        env=server_env(),
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "--port" in done.stderr and "1 to 65535" in done.stderr and "Traceback" not in done.stderr

"""The get_chat tool through a real MCP client in memory, in both protocol eras, with the network mocked."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from mcp import Client

from b24_mcp import demo
from b24_mcp import settings as config
from b24_mcp.errors import ConfigError
from b24_mcp.server import build_server

CODE = "hookSECRETcode123"
TOKEN = "botSECRETtoken456"
HOOK = f"https://acme.bitrix24.com/rest/1/{CODE}/"

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Recorder:
    """The demo portal's answers, with every request recorded."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        # The demo portal answers for its own webhook; point the real-looking one at it.
        demo_request = httpx.Request(
            "POST", str(request.url).replace(HOOK, config.DEMO_WEBHOOK_URL), content=request.content
        )
        body = json.loads(request.content)
        if body.get("botToken") == TOKEN:
            body["botToken"] = config.DEMO_BOT_TOKEN
            demo_request = httpx.Request("POST", demo_request.url, content=json.dumps(body).encode())
        return demo.handle(demo_request)


def webhook_server(recorder: Recorder, **env: str) -> Any:
    settings = config.load({"B24_WEBHOOK_URL": HOOK, "B24_BOT_ID": "456", "B24_BOT_TOKEN": TOKEN, **env})
    return build_server(settings, transport=httpx.MockTransport(recorder))


async def test_tool_listing(mode: str) -> None:
    async with Client(build_server(config.load({}, demo=True)), mode=mode) as client:
        (tool,) = (await client.list_tools()).tools
    assert tool.name == "get_chat"
    assert tool.annotations is not None
    assert tool.annotations.read_only_hint is True
    assert tool.annotations.idempotent_hint is True
    assert tool.annotations.open_world_hint is True
    assert tool.annotations.destructive_hint is False
    assert tool.annotations.title
    assert tool.input_schema["required"] == ["dialogId"]
    assert set(tool.input_schema["properties"]) == {"dialogId", "botId", "botToken"}
    assert tool.input_schema["properties"]["botId"]["type"] == "integer"
    assert tool.output_schema is not None and tool.output_schema["required"] == ["id", "dialogId"]
    assert "ACCESS_DENIED" in (tool.description or "") and "chat5" in (tool.description or "")


async def test_demo_chat(mode: str) -> None:
    async with Client(build_server(config.load({}, demo=True)), mode=mode) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
        tool = (await client.list_tools()).tools[0]
    assert not result.is_error
    assert result.structured_content == {k: v for k, v in demo.CHATS["chat5"].items()}
    jsonschema.validate(result.structured_content, tool.output_schema or {})
    summary = result.content[0].text  # type: ignore[union-attr]
    assert summary.startswith("DEMO DATA")
    for part in ("Support Chat (chat5)", "owner", "3 members", "15 messages", "user 456"):
        assert part in summary
    assert json.loads(result.content[1].text) == result.structured_content  # type: ignore[union-attr]


async def test_personal_dialog(mode: str) -> None:
    async with Client(build_server(config.load({}, demo=True)), mode=mode) as client:
        result = await client.call_tool("get_chat", {"dialogId": "1"})
    assert not result.is_error
    assert result.structured_content is not None and result.structured_content["messageType"] == "P"
    assert "personal chat" in result.content[0].text  # type: ignore[union-attr]


async def test_webhook_call_and_secret_hygiene(mode: str) -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder), mode=mode) as client:
        ok = await client.call_tool("get_chat", {"dialogId": "chat5"})
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
    assert not ok.is_error and ok.structured_content is not None and ok.structured_content["id"] == 5
    assert "DEMO" not in ok.content[0].text  # type: ignore[union-attr]
    assert denied.is_error
    text = denied.content[0].text  # type: ignore[union-attr]
    assert "ACCESS_DENIED" in text and "not a participant of chat7" in text
    for result in (ok, denied):
        dumped = result.model_dump_json()
        assert CODE not in dumped and TOKEN not in dumped
    assert len(recorder.requests) == 2


BAD_ARGUMENTS = [
    ({}, "dialogId is required"),
    ({"dialogId": ""}, "dialogId is required"),
    ({"dialogId": None}, "dialogId is required"),
    ({"dialogId": "chat 5"}, "Remove the spaces"),
    ({"dialogId": 5}, "got a JSON number"),
    ({"dialogId": "group5"}, "is not valid"),
    ({"dialogId": "chat5" * 10}, "is not valid"),
    ({"dialogId": "chat5", "botId": 0}, "botId must be a positive integer"),
    ({"dialogId": "chat5", "botId": "four"}, "botId must be a positive integer"),
    ({"dialogId": "chat5", "botId": 2**40}, "botId must be a positive integer"),
    ({"dialogId": "chat5", "botId": False}, "botId must be a positive integer"),
    ({"dialogId": "chat5", "botToken": 123456789}, "botToken must be a string"),
    ({"dialogId": "chat5", "botToken": "contains a space"}, "botToken contains spaces"),
    ({"dialogId": "chat5", "botToken": "t" * 41}, "botToken is 41 characters long"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_ARGUMENTS)
async def test_bad_input_is_an_error_and_sends_nothing(arguments: dict[str, Any], message: str) -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder), mode="legacy") as client:
        result = await client.call_tool("get_chat", arguments)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert message in text
    assert "Traceback" not in text and "validation error" not in text
    assert recorder.requests == []
    token = arguments.get("botToken")
    if isinstance(token, str):
        assert token not in text


async def test_missing_bot_settings_name_argument_and_variable(mode: str) -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder, B24_BOT_TOKEN=""), mode=mode) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error
    assert "botToken" in result.content[0].text and "B24_BOT_TOKEN" in result.content[0].text  # type: ignore[union-attr]
    assert recorder.requests == []


async def test_configuration_error_is_reported_by_the_tool(mode: str) -> None:
    problem = ConfigError("B24_WEBHOOK_URL must use https:// (...)")
    async with Client(build_server(problem), mode=mode) as client:
        assert len((await client.list_tools()).tools) == 1  # the server still starts
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "not configured" in text and "B24_WEBHOOK_URL must use https://" in text and "restart" in text


async def test_unexpected_failure_is_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"internal detail {TOKEN}")

    settings = config.load({"B24_WEBHOOK_URL": HOOK, "B24_BOT_ID": "456", "B24_BOT_TOKEN": TOKEN})
    async with Client(build_server(settings, transport=httpx.MockTransport(boom)), mode="legacy") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "failed unexpectedly" in text and "internal detail" not in text and TOKEN not in text


async def test_rate_limit_waits_are_reported_as_progress() -> None:
    recorder = Recorder()
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    server = webhook_server(recorder, B24_RATE_BURST="1", B24_RATE_LIMIT="20")
    async with Client(server, mode="legacy") as client:
        await client.call_tool("get_chat", {"dialogId": "chat5"})
        result = await client.call_tool("get_chat", {"dialogId": "chat5"}, progress_callback=on_progress)
    assert not result.is_error
    assert seen and "rate limit" in (seen[0][2] or "")

"""The MCP tool layer through the SDK's in-memory client, in both protocol eras, with the network mocked:
what is listed, what a call returns, and that every failure is an isError result that sends nothing it should not.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from b24_mcp import settings as config
from b24_mcp.errors import ConfigError
from b24_mcp.server import build_server
from b24_mcp.tools.get_chat import summary as chat_summary
from b24_mcp.tools.registry import TOOLS as REGISTRY
from b24_mcp.tools.registry import ready
from b24_mcp.tools.spec import CODE_META, UNTRUSTED_DATA
from tests.values import BOT_ID, CHAT, CODE, TOKEN, webhook_vars

pytestmark = pytest.mark.anyio

TOOLS = [spec.name for spec in REGISTRY]  # the names themselves are in the contract snapshot
INBOX = {spec.name for spec in REGISTRY if spec.inbox is not None}


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def text_of(result: Any, block: int = 0) -> str:
    return str(result.content[block].text)


class Recorder:
    """A portal for imbot.v2.Chat.get with bot 456: chat7 is refused, another bot token is refused (and echoed,
    as a careless portal might). Every request is recorded."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        if body.get("botToken") != TOKEN:
            return err(403, "BOT_OWNERSHIP_ERROR", f"botToken {body.get('botToken')} does not own the bot")
        if body.get("dialogId") == "chat7":
            return err(403, "ACCESS_DENIED", "Access denied")
        return httpx.Response(200, json={"result": {"chat": {**CHAT, "dialogId": body["dialogId"]}}})


def err(status: int, code: str, description: str) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description})


def webhook_server(recorder: Recorder, **env: str) -> MCPServer:
    return build_server(config.load(webhook_vars(**env)), transport=httpx.MockTransport(recorder))


def demo_server() -> MCPServer:
    return build_server(config.load({}, demo=True))


# --- listing -----------------------------------------------------------------------------------------------------


async def test_listing(mode: str) -> None:
    async with Client(demo_server(), mode=mode) as client:
        tools = (await client.list_tools()).tools
        templates = (await client.list_resource_templates()).resource_templates
    assert [t.name for t in tools] == TOOLS
    for tool in tools:
        assert tool.title and tool.description and "Example:" in tool.description
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.idempotent_hint is True
        assert tool.annotations.open_world_hint is True
        assert tool.annotations.destructive_hint is False
        assert tool.annotations.title == tool.title
        schema = tool.input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        if tool.name in INBOX:  # the journal is the configured bot's: no other bot's to name
            assert not {"botId", "botToken"} & set(schema["properties"])
        else:
            assert {"botId", "botToken"} <= set(schema["properties"])
            assert schema["properties"]["botId"]["type"] == "integer"
        assert tool.output_schema is not None and "title" in tool.output_schema
    by_name = {t.name: t for t in tools}
    get_chat = by_name["get_chat"]
    assert get_chat.input_schema["required"] == ["dialogId"]
    assert set(get_chat.input_schema["properties"]) == {"dialogId", "botId", "botToken"}
    assert get_chat.output_schema is not None and get_chat.output_schema["required"] == ["id", "dialogId"]
    assert "ACCESS_DENIED" in (get_chat.description or "") and "chat5" in (get_chat.description or "")
    assert by_name["get_message"].input_schema["required"] == ["messageId"]
    assert "required" not in by_name["get_messages"].input_schema  # exactly one of dialogId, messageId
    assert {"order", "limit"} <= set(by_name["get_chat_members"].input_schema["properties"])
    assert by_name["get_file"].input_schema["required"] == ["fileId"]
    assert [t.uri_template for t in templates] == [  # in the order of the tools they come from
        "bitrix24://chat/{dialogId}",
        "bitrix24://chat/{dialogId}/members",
        "bitrix24://chat/{dialogId}/messages",
        "bitrix24://file/{fileId}",
    ]


# --- calls ------------------------------------------------------------------------------------------------------


async def test_demo_calls(mode: str) -> None:
    async with Client(demo_server(), mode=mode) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})  # checked against outputSchema by the Client
        personal = await client.call_tool("get_chat", {"dialogId": 1})  # a bare number, as the Inspector sends
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
        resource = await client.read_resource("bitrix24://chat/chat5")
    assert not result.is_error
    assert result.structured_content is not None and result.structured_content["dialogId"] == "chat5"
    summary = text_of(result)
    assert summary.startswith("DEMO DATA")
    for part in ('"Support Chat" (chat5)', "owner", "3 members", "8 messages", f"user {BOT_ID}"):
        assert part in summary
    assert json.loads(text_of(result, 1)) == result.structured_content
    assert resource.contents[0].mime_type == "application/json"
    read = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
    assert read["notice"].startswith("DEMO DATA") and read == result.structured_content
    assert not personal.is_error and "personal chat" in text_of(personal)
    assert personal.structured_content is not None and personal.structured_content["messageType"] == "P"
    assert denied.is_error and "ACCESS_DENIED" in text_of(denied)


async def test_a_resource_outside_the_served_templates_is_not_found_and_sends_nothing() -> None:
    """resources/read: a URI no served template matches (another scheme, a template B24_TOOLS leaves out) and a
    dialogId in the wrong form are "not found" (-32602) naming what was wrong, and no request leaves."""
    recorder = Recorder()
    async with Client(webhook_server(recorder, B24_TOOLS="get_chat"), mode="legacy") as client:
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        for uri in ("bitrix24://file/138", "bitrix24://chat/chat5/messages", "https://example.com/chat5"):
            with pytest.raises(MCPError, match="Unknown resource") as info:
                await client.read_resource(uri)
            assert info.value.error.code == INVALID_PARAMS
        with pytest.raises(MCPError, match="dialogId") as bad:
            await client.read_resource("bitrix24://chat/chat%205")
        read = await client.read_resource("bitrix24://chat/chat5")
    assert templates == ["bitrix24://chat/{dialogId}"] and bad.value.error.code == INVALID_PARAMS
    assert json.loads(read.contents[0].text)["dialogId"] == "chat5"  # type: ignore[union-attr]
    assert len(recorder.requests) == 1


async def test_webhook_call_and_secret_hygiene(mode: str) -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder), mode=mode) as client:
        ok = await client.call_tool("get_chat", {"dialogId": "chat5"})
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
    assert not ok.is_error and ok.structured_content == {"notice": UNTRUSTED_DATA, **CHAT}
    assert "DEMO" not in text_of(ok)
    assert denied.is_error and "not a participant of chat7" in text_of(denied)
    assert len(denied.content) == 1 and denied.structured_content is None
    for result in (ok, denied):
        dumped = result.model_dump_json()
        assert CODE not in dumped and TOKEN not in dumped
    assert len(recorder.requests) == 2


async def test_error_result_carries_the_bitrix24_code_in_meta() -> None:
    async with Client(webhook_server(Recorder()), mode="legacy") as client:
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
        bad = await client.call_tool("get_chat", {"dialogId": "chat 7"})
    assert denied.is_error and (denied.meta or {}).get(CODE_META) == "ACCESS_DENIED"
    assert bad.is_error and CODE_META not in (bad.meta or {})  # no Bitrix24 code: nothing was asked


async def test_callers_own_bot_token_is_masked() -> None:
    async with Client(webhook_server(Recorder()), mode="legacy") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5", "botToken": "callerTOKEN999"})
    assert result.is_error and "BOT_OWNERSHIP_ERROR" in text_of(result)
    assert "callerTOKEN999" not in result.model_dump_json()


# --- bad input: an error naming the argument, and nothing sent -------------------------------------------------------

BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("get_chat", {}, "dialogId is required"),
    ("get_chat", {"dialogId": ""}, "dialogId is required"),
    ("get_chat", {"dialogId": None}, "dialogId is required"),
    ("get_chat", {"dialogId": "chat 5"}, "Remove the spaces"),
    ("get_chat", {"dialogId": 5.5}, "got a JSON number"),
    ("get_chat", {"dialogId": "group5"}, "is not valid"),
    ("get_chat", {"dialogId": "../../etc/passwd"}, "is not valid"),
    ("get_chat", {"dialogId": "chat5" * 10}, "is not valid"),
    ("get_chat", {"dialogId": "https://x.bitrix24.com/online/?IM_DIALOG=chat12"}, 'pass "chat12"'),
    ("get_chat", {"dialogId": "chat5", "botId": 0}, "botId must be a positive integer"),
    ("get_chat", {"dialogId": "chat5", "botId": -3}, "botId must be a positive integer"),
    ("get_chat", {"dialogId": "chat5", "botId": "four"}, "botId must be a positive integer"),
    ("get_chat", {"dialogId": "chat5", "botId": 2**40}, "botId must be a positive integer"),
    ("get_chat", {"dialogId": "chat5", "botId": False}, "botId must be a positive integer"),
    ("get_chat", {"dialogId": "chat5", "botToken": 123456789}, "botToken must be a string"),
    ("get_chat", {"dialogId": "chat5", "botToken": "contains a space"}, "botToken contains spaces"),
    ("get_chat", {"dialogId": "chat5", "botToken": "t" * 41}, "botToken is 41 characters long"),
    ("get_chat", {"dialogId": "chat5", "dialog_id": "chat5"}, "unknown argument 'dialog_id'"),
    ("get_chat_members", {"dialogId": "chat5", "limit": 0}, "limit must be an integer from 1 to 200"),
    ("get_chat_members", {"dialogId": "chat5", "order": {"name": "ASC"}}, "order must be"),
    ("get_messages", {}, "exactly one of dialogId"),
    ("get_messages", {"dialogId": "chat5", "messageId": 789}, "exactly one of dialogId"),
    ("get_messages", {"messageId": 789, "range": 51}, "range must be an integer from 1 to 50"),
    ("get_message", {}, "messageId is required"),
    ("get_message", {"messageId": "x"}, "messageId must be an integer"),
]


async def test_bad_input_is_an_error_and_sends_nothing() -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder), mode="legacy") as client:
        for tool, arguments, message in BAD_ARGUMENTS:
            result = await client.call_tool(tool, arguments)
            text = text_of(result)
            assert result.is_error and message in text, (tool, arguments, text)
            assert "Traceback" not in text and "validation error" not in text
            token = arguments.get("botToken")
            assert not isinstance(token, str) or token not in text
    assert recorder.requests == []


async def test_unknown_arguments_are_refused_by_name() -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder), mode="legacy") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5", "extra": 1, "bogus": 2})
    assert result.is_error
    assert text_of(result).startswith("unknown arguments 'bogus', 'extra': this tool takes only dialogId, botId")
    assert recorder.requests == []


async def test_missing_bot_settings_name_argument_and_variable(mode: str) -> None:
    recorder = Recorder()
    async with Client(webhook_server(recorder, B24_BOT_TOKEN=""), mode=mode) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error and "botToken" in text_of(result) and "B24_BOT_TOKEN" in text_of(result)
    assert recorder.requests == []


async def test_configuration_error_is_reported_by_the_tool(mode: str) -> None:
    problem = ConfigError("B24_WEBHOOK_URL must use https:// (...)")
    async with Client(build_server(problem), mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == TOOLS  # the server still starts
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error
    text = text_of(result)
    assert "not configured" in text and "B24_WEBHOOK_URL must use https://" in text and "restart" in text
    with pytest.raises(ConfigError) as example:  # a problem that ends without a full stop still reads as a sentence
        config.load(webhook_vars("https://your-portal.bitrix24.com/rest/1/x/"))
    async with Client(build_server(example.value), mode=mode) as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert "replace it with your own. Then restart the MCP server." in text_of(result)


async def test_unexpected_failure_is_not_a_traceback() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"internal detail {TOKEN}")

    server = build_server(config.load(webhook_vars()), transport=httpx.MockTransport(boom))
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
    assert result.is_error
    text = text_of(result)
    assert "failed unexpectedly" in text and "internal detail" not in text and TOKEN not in text


async def test_rate_limit_waits_are_reported_as_progress() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    # One call at a time, 4 a second: of two calls made together, the second waits its turn (up to 0.25 s; wide
    # enough that a loaded machine cannot start the two calls a whole turn apart, which would leave no wait).
    server = webhook_server(Recorder(), B24_RATE_BURST="1", B24_RATE_LIMIT="4")
    results: list[Any] = []

    async def one(client: Client) -> None:
        results.append(await client.call_tool("get_chat", {"dialogId": "chat5"}, progress_callback=on_progress))

    async with Client(server, mode="legacy") as client:
        await client.list_tools()
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, client)
            tg.start_soon(one, client)
    assert len(results) == 2 and not any(r.is_error for r in results)
    ((waited, _, why),) = seen
    assert 0 < waited <= 0.25 and "B24_RATE_LIMIT" in (why or "")


def test_counts_of_one_are_singular() -> None:
    summary = chat_summary({"id": 9, "dialogId": "chat9", "userCounter": 1, "messageCount": 1})
    assert "1 member," in summary and summary.endswith("1 message.")
    assert "2 members, 0 messages" in chat_summary({"id": 9, "dialogId": "chat9", "userCounter": 2, "messageCount": 0})


async def test_an_unknown_tool_is_an_error_naming_the_tools_there_are() -> None:
    async with Client(demo_server(), mode="legacy") as client:
        result = await client.call_tool("get_chats", {"dialogId": "chat5"})
    assert result.is_error and "Unknown tool: get_chats" in text_of(result) and "get_chat, " in text_of(result)


def test_the_warm_up_makes_ready_only_what_the_served_tools_need() -> None:
    """What `ready` hands the client to build parsers for: the calls of the tools served (B24_TOOLS), and none of
    an inbox tool's while the journal is off (it answers JOURNAL_OFF without a call). The output models are built
    when their module loads (no defer_build), so a tool's first result is not spent building its serializer."""
    by_name = {spec.name: spec for spec in REGISTRY}
    chat_result = by_name["get_chat"].calls[0].result
    event_page = by_name["get_updates"].calls[0].result
    assert ready(["get_chat"], journal=False) == [chat_result]
    assert by_name["get_chat"].output.__pydantic_complete__
    served = ready(None, journal=False)
    assert chat_result in served and event_page not in served
    assert event_page in ready(None, journal=True)
    assert ready(["list_chats", "search_messages"], journal=True) == []  # they read the journal only

"""What hosts show, through the SDK's in-memory client: icons that need no fetch, a link to the chat's resource
in each successful read, completions of the templates' dialogId, and cache hints for 2026-07-28 clients.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types import ResourceLink, ResourceTemplateReference

from b24_mcp import settings as config
from b24_mcp.server import COMPLETIONS_MAX, LIST_TTL_MS, READ_TTL_MS, RecentDialogs, build_server
from tests.values import CHAT, webhook_vars

pytestmark = pytest.mark.anyio

CHAT_TEMPLATE = "bitrix24://chat/{dialogId}"
TEMPLATES = [CHAT_TEMPLATE, CHAT_TEMPLATE + "/messages", CHAT_TEMPLATE + "/members"]


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def demo_server() -> MCPServer:
    return build_server(config.load({}, demo=True))


def webhook_server() -> MCPServer:
    """A portal that knows every chat it is asked about (chatN), with no messages in it."""

    def answer(request: httpx.Request) -> httpx.Response:
        dialog_id = json.loads(request.content).get("dialogId")
        return httpx.Response(200, json={"result": {"chat": {**CHAT, "dialogId": dialog_id, "lastMessageId": 0}}})

    return build_server(config.load(webhook_vars()), transport=httpx.MockTransport(answer))


def links(result: object) -> list[ResourceLink]:
    return [block for block in getattr(result, "content", []) if isinstance(block, ResourceLink)]


async def complete(client: Client, template: str, typed: str) -> list[str]:
    result = await client.complete(ResourceTemplateReference(uri=template), {"name": "dialogId", "value": typed})
    return result.completion.values


# --- icons ---------------------------------------------------------------------------------------------------------


async def test_server_tools_and_templates_carry_a_data_uri_icon(mode: str) -> None:
    async with Client(demo_server(), mode=mode) as client:
        tools = (await client.list_tools()).tools
        templates = (await client.list_resource_templates()).resource_templates
        server_icons = client.server_info.icons if client.server_info else None
    owners = [("server", server_icons), *[(t.name, t.icons) for t in tools], *[(t.name, t.icons) for t in templates]]
    for owner, icons in owners:
        assert icons, f"{owner} has no icon"
        (icon,) = icons
        assert icon.mime_type == "image/svg+xml" and icon.sizes == ["any"]
        head, _, data = icon.src.partition(",")
        assert head == "data:image/svg+xml;base64", f"{owner}'s icon would be fetched: {icon.src[:40]}"
        svg = base64.b64decode(data, validate=True).decode()
        assert svg.startswith("<svg xmlns=") and "href" not in svg and "<script" not in svg  # nothing to load or run


# --- resource links ----------------------------------------------------------------------------------------------


async def test_successful_reads_link_their_resource_and_errors_do_not(mode: str) -> None:
    async with Client(demo_server(), mode=mode) as client:
        chat = await client.call_tool("get_chat", {"dialogId": "chat5"})
        personal = await client.call_tool("get_chat", {"dialogId": 1})
        members = await client.call_tool("get_chat_members", {"dialogId": "chat5"})
        messages = await client.call_tool("get_messages", {"dialogId": "chat5"})
        around = await client.call_tool("get_messages", {"messageId": 789})
        one = await client.call_tool("get_message", {"messageId": 789})
        denied = await client.call_tool("get_chat", {"dialogId": "chat7"})
        (link,) = links(chat)
        linked = await client.read_resource(link.uri)
    assert link.uri == "bitrix24://chat/chat5" and link.name == "bitrix24-chat" and "chat5" in (link.title or "")
    assert link.mime_type == "application/json"
    read = json.loads(linked.contents[0].text)  # type: ignore[union-attr]
    assert read["notice"].startswith("DEMO DATA") and read == chat.structured_content
    assert [x.uri for x in links(personal)] == ["bitrix24://chat/1"]
    assert [x.uri for x in links(members)] == ["bitrix24://chat/chat5/members"]
    assert [x.uri for x in links(messages)] == ["bitrix24://chat/chat5/messages"]
    assert links(around) == [] and links(one) == []  # by message id: no chat named, nothing to link
    assert denied.is_error and links(denied) == []
    assert [type(block).__name__ for block in chat.content] == ["TextContent", "TextContent", "ResourceLink"]


# --- completions ---------------------------------------------------------------------------------------------------


async def test_demo_completes_the_demo_chats_and_puts_the_last_answered_first() -> None:
    async with Client(demo_server(), mode="legacy") as client:
        assert client.server_capabilities.completions is not None
        assert await complete(client, CHAT_TEMPLATE, "") == ["chat5", "chat12", "1", "chat7"]
        await client.call_tool("get_chat", {"dialogId": "chat12"})
        for template in TEMPLATES:
            assert await complete(client, template, "") == ["chat12", "chat5", "1", "chat7"]
        assert await complete(client, CHAT_TEMPLATE, "chat1") == ["chat12"]
        assert await complete(client, CHAT_TEMPLATE, "1") == ["1", "chat12"]  # starts with it, then contains it
        assert await complete(client, CHAT_TEMPLATE, "chat99") == []
        other = await client.complete(ResourceTemplateReference(uri=CHAT_TEMPLATE), {"name": "x", "value": ""})
        assert other.completion.values == []


async def test_completions_offer_only_dialogs_answered_for(mode: str) -> None:
    async with Client(webhook_server(), mode=mode) as client:
        assert await complete(client, CHAT_TEMPLATE, "") == []
        await client.call_tool("get_chat", {"dialogId": "chat5"})
        await client.call_tool("get_chat", {"dialogId": "chat 9"})  # refused locally: not a dialog answered for
        await client.read_resource("bitrix24://chat/chat8/messages")  # a resource read counts too
        await client.call_tool("get_messages", {"dialogId": "chat6"})
        assert await complete(client, CHAT_TEMPLATE + "/members", "") == ["chat6", "chat8", "chat5"]
        await client.call_tool("get_chat", {"dialogId": "chat5"})
        assert await complete(client, CHAT_TEMPLATE, "ch") == ["chat5", "chat6", "chat8"]


def test_recent_dialogs_are_bounded_most_recent_first() -> None:
    recent = RecentDialogs(["chat1", "chat2"])
    for n in range(3, COMPLETIONS_MAX + 10):
        recent.answered(f"chat{n}")
    recent.answered("chat50")
    found = recent.matching("")
    assert len(found) == COMPLETIONS_MAX and found[:2] == ["chat50", f"chat{COMPLETIONS_MAX + 9}"]
    assert "chat1" not in found and len(set(found)) == len(found)


# --- cache hints (2026-07-28) ------------------------------------------------------------------------------------


async def test_cache_hints_for_2026_clients() -> None:
    async with Client(demo_server(), mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        tools = await client.list_tools(cache_mode="refresh")
        templates = await client.list_resource_templates(cache_mode="refresh")
        read = await client.read_resource("bitrix24://chat/chat5", cache_mode="refresh")
    assert (tools.ttl_ms, tools.cache_scope) == (LIST_TTL_MS, "public")
    assert (templates.ttl_ms, templates.cache_scope) == (LIST_TTL_MS, "public")
    assert (read.ttl_ms, read.cache_scope) == (READ_TTL_MS, "private")
    assert LIST_TTL_MS >= 3600 * 1000 and READ_TTL_MS <= 60 * 1000  # long-lived lists, short chat reads

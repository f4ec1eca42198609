"""Every result fits B24_RESULT_BUDGET (text blocks and structured content together), nothing dropped silently;
and B24_TOOLS chooses what is listed. Through the SDK's in-memory client against the stand-in portal's logic."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from b24_mcp import demo, settings
from b24_mcp.errors import ConfigError, problems_of
from b24_mcp.server import build_server
from b24_mcp.standin import StandIn
from b24_mcp.standin_data import MESSAGES, USERS
from b24_mcp.tools.registry import names
from tests.sessions import Session, anyio_backend, module_session  # noqa: F401 - anyio_backend: for the module
from tests.values import CODE, TOKEN, webhook_vars

pytestmark = pytest.mark.anyio

WORDS = 'Ünïcode "quoted" line\n' * 900  # ~20,000 characters, and escapes that grow in JSON


def size(result: CallToolResult) -> tuple[int, int]:
    """(all the result, its structured content alone), in characters, as the server counts them."""
    text = sum(len(b.text) for b in result.content if isinstance(b, TextContent))
    structured = len(json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":")))
    return text + structured, structured


session = module_session()


Call = Callable[[StandIn, str, dict[str, Any]], Awaitable[CallToolResult]]


@pytest.fixture
def call(session: Session) -> Call:
    """Call a tool on the module's server with `portal` behind it; the SDK's Client checks structuredContent
    against the outputSchema."""

    async def call(portal: StandIn, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        session.answer = lambda request: demo.answer(portal, request)
        result = await session.client.call_tool(tool, arguments)
        assert not result.is_error, result.content
        return result

    return call


async def call_with(portal: StandIn, tool: str, arguments: dict[str, Any], **env: str) -> CallToolResult:
    """The same on a server of its own, with `env` added to its settings."""
    server = build_server(
        settings.load(webhook_vars(B24_RATE_BURST="50", **env)),
        transport=httpx.MockTransport(lambda request: demo.answer(portal, request)),
    )
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result


def long_chat(count: int = 101) -> StandIn:
    messages = [{**MESSAGES[2], "id": 7000 + i, "text": f"{i}: {WORDS}"} for i in range(count)]
    return StandIn(bot_token=TOKEN, webhook_code=CODE, messages=[*MESSAGES, *messages])


async def test_the_largest_window_fits_and_says_how_to_read_on(call: Call) -> None:
    result = await call(long_chat(), "get_messages", {"messageId": 7050, "range": 50})
    total, structured = size(result)
    assert total <= settings.RESULT_BUDGET and structured <= settings.RESULT_BUDGET
    data = result.structured_content
    assert data is not None
    ids = [m["id"] for m in data["messages"]]
    assert 7050 in ids and ids == list(range(ids[0], ids[-1] + 1))  # around the asked-for message, none skipped
    assert 7000 < ids[0] and ids[-1] < 7100 and data["hasPrevPage"] and data["hasNextPage"]
    assert all(m["textTruncated"] and m["textLength"] == len(f"{m['id'] - 7000}: {WORDS}") for m in data["messages"])
    assert data["paging"] == {
        "earlier": f"get_messages(beforeMessageId={ids[0]}, range=50)",
        "later": f"get_messages(afterMessageId={ids[-1]}, range=50)",
    }
    assert "cut to 2,000 characters" in data["notice"] and "left for the next page" in data["notice"]
    assert "b24-mcp: cut to fit the result budget" in result.content[0].text  # type: ignore[union-attr]


async def test_the_latest_messages_keep_the_newest_and_page_back_to_the_rest(call: Call) -> None:
    portal = long_chat()
    portal.chats["chat5"] = {**portal.chats["chat5"], "lastMessageId": 7100}
    data = (await call(portal, "get_messages", {"dialogId": "chat5"})).structured_content
    assert data is not None and data["messages"][-1]["id"] == 7100 and data["hasPrevPage"] is True
    assert "later" not in data["paging"]  # nothing newer was dropped: the portal's own hasNextPage stands


async def test_a_page_forward_keeps_the_nearest_and_leaves_the_rest_for_later(call: Call) -> None:
    data = (await call(long_chat(), "get_messages", {"afterMessageId": 7000, "range": 50})).structured_content
    assert data is not None and data["messages"][0]["id"] == 7001 and data["hasNextPage"] is True
    assert data["hasPrevPage"] is True  # the anchor itself is earlier


async def test_a_window_within_the_budget_is_left_whole(call: Call) -> None:
    data = (await call(long_chat(), "get_messages", {"messageId": 782, "range": 2})).structured_content
    assert data is not None and [m["id"] for m in data["messages"]] == [779, 780, 782, 784, 786]
    assert not any("textTruncated" in m for m in data["messages"]) and "Cut" not in data["notice"]


async def test_two_hundred_members_fit_and_the_rest_are_named_as_left_out(call: Call) -> None:
    users = {uid: {**USERS[1], "id": uid, "name": f"Person {uid}", "workPosition": "x" * 500} for uid in range(1, 200)}
    portal = StandIn(bot_token=TOKEN, webhook_code=CODE, users={**USERS, **users}, members={"chat5": [456, *users]})
    result = await call(portal, "get_chat_members", {"dialogId": "chat5", "limit": 200})
    data = result.structured_content
    assert data is not None and size(result)[0] <= settings.RESULT_BUDGET
    shown = len(data["users"])  # of the 200: the bot and 199 people
    assert 0 < shown < 200 and f"the last {200 - shown} members of 200 are not shown" in data["notice"]
    assert [u["id"] for u in data["users"]] == [456, *range(1, shown)]  # the first ones, in the portal's order


async def test_one_message_is_cut_only_when_the_budget_is_too_small_for_it(call: Call) -> None:
    portal = long_chat(1)
    whole = await call(portal, "get_message", {"messageId": 7000})
    assert whole.structured_content is not None and "textTruncated" not in whole.structured_content["message"]
    small = await call_with(portal, "get_message", {"messageId": 7000}, B24_RESULT_BUDGET="24000")
    message = small.structured_content["message"] if small.structured_content else {}
    assert size(small)[0] <= 24_000 and message["textTruncated"] and message["textLength"] == len(f"0: {WORDS}")


async def test_b24_tools_lists_only_the_chosen_tools_and_their_resources() -> None:
    server = build_server(settings.load(webhook_vars(B24_TOOLS="get_messages, get_chat"), tools=names()))
    async with Client(server, mode="legacy") as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    assert listed == ["get_chat", "get_messages"]
    assert templates == ["bitrix24://chat/{dialogId}", "bitrix24://chat/{dialogId}/messages"]


@pytest.mark.parametrize("value", ["get_chat,get_mesages", ",", "get_chat,x" + "y" * 1000])
def test_an_unknown_tool_name_is_a_problem_that_names_the_tools(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings.load(webhook_vars(B24_TOOLS=value), tools=names())
    (problem,) = problems_of(info.value)
    assert problem.startswith("B24_TOOLS names") and ", ".join(names()) in problem and len(problem) < 400


@pytest.mark.parametrize("value", ["1000", "nan", "big"])
def test_a_budget_too_small_to_hold_one_message_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"B24_RESULT_BUDGET.*at least 24,000"):
        settings.load(webhook_vars(B24_RESULT_BUDGET=value))

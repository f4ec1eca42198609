"""The inbox tools through the SDK's client: list_chats, get_updates, search_messages over the journal, the demo's
journal, the error without one, and a chat that refuses a read marked as left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from b24_mcp import demo
from b24_mcp import settings as config
from b24_mcp.journal.store import Journal
from b24_mcp.server import build_server
from b24_mcp.standin import StandIn
from b24_mcp.tools.spec import CODE_META
from tests.values import CODE, TOKEN, webhook_vars

pytestmark = pytest.mark.anyio


def journal_server(standin: StandIn, path: Path, **env: str) -> MCPServer:
    settings = config.load(webhook_vars(B24_JOURNAL="on", B24_JOURNAL_FILE=str(path), B24_JOURNAL_DAYS="3650", **env))
    return build_server(settings, transport=httpx.MockTransport(lambda request: demo.answer(standin, request)))


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = result.structured_content
    assert next(iter(data)) == "notice"  # how to read what follows comes first
    return data


async def test_without_the_journal_each_inbox_tool_says_what_it_is_and_how_to_turn_it_on() -> None:
    server = build_server(config.load(webhook_vars()), transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    async with Client(server) as client:
        for name, arguments in [("list_chats", {}), ("get_updates", {}), ("search_messages", {"query": "x"})]:
            result = await client.call_tool(name, arguments)
            assert result.is_error and (result.meta or {}).get(CODE_META) == "JOURNAL_OFF"
            text = text_of(result)
            assert "B24_JOURNAL=on" in text and "event queue" in text and "only one application" in text


async def test_the_demo_journal_finds_a_word_get_messages_shows() -> None:
    async with Client(build_server(config.load({}, demo=True))) as client:
        shown = structured(await client.call_tool("get_messages", {"dialogId": "chat12"}))
        word = "staging"
        assert any(word in (m.get("text") or "").lower() for m in shown["messages"])
        hits = structured(await client.call_tool("search_messages", {"query": word}))["hits"]
        assert {hit["messageId"] for hit in hits} == {2202, 2210}
        assert all(hit["dialogId"] == "chat12" and "**" in hit["snippet"] for hit in hits)
        chats = structured(await client.call_tool("list_chats", {}))["chats"]
        assert [chat["dialogId"] for chat in chats] == ["1", "chat5", "chat12"]


async def test_get_updates_since_a_time_then_by_cursor_then_since_its_last_answer(tmp_path: Path) -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    async with Client(journal_server(standin, tmp_path / "j.sqlite3", B24_RATE_LIMIT="1000")) as client:
        first = structured(await client.call_tool("get_updates", {"since": "2025-03-18T11:00:00+01:00", "limit": 3}))
        assert first["hasMore"] is True
        assert [c["messageId"] for chat in first["chats"] for c in chat["changes"]] == [898, 901, 903]
        rest = structured(await client.call_tool("get_updates", {"cursor": first["cursor"]}))
        assert [c["messageId"] for chat in rest["chats"] for c in chat["changes"]] == [905]
        standin.chatter.say("chat5", 2, "One more thing about the export", "2025-03-19T09:00:00+01:00")
        standin.chatter.edit(789, "Works now, thanks a lot!", "2025-03-19T09:01:00+01:00")
        standin.chatter.delete(786, "2025-03-19T09:02:00+01:00")
        age(tmp_path / "j.sqlite3")
        later = structured(await client.call_tool("get_updates", {}))  # since its previous answer
        (chat,) = later["chats"]
        assert chat["dialogId"] == "chat5"
        assert [(c["kind"], c.get("messageId")) for c in chat["changes"]] == [
            ("new", 2211),
            ("edited", 789),
            ("deleted", 786),
        ]
        assert chat["changes"][1]["message"]["text"] == "Works now, thanks a lot!"
        assert chat["changes"][1]["message"]["author"] == "Tom Weber"


def age(path: Path) -> None:
    """The journal's last drain made long ago (as a few seconds' wait would): the next inbox call drains."""
    Journal(path).set_meta("drained_at", "0")


async def test_list_chats_marks_a_chat_whose_read_is_refused_as_left(tmp_path: Path) -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    async with Client(journal_server(standin, tmp_path / "j.sqlite3", B24_RATE_LIMIT="1000")) as client:
        structured(await client.call_tool("list_chats", {}))
        standin.members["chat12"].remove(456)  # the bot was removed: no event says so
        refused = await client.call_tool("get_chat", {"dialogId": "chat12"})
        assert refused.is_error
        chats = {c["dialogId"]: c for c in structured(await client.call_tool("list_chats", {}))["chats"]}
        assert chats["chat12"].get("left") is True and "left" not in chats["chat5"]


async def test_search_messages_filters_and_refuses_bad_arguments_by_name(tmp_path: Path) -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    async with Client(journal_server(standin, tmp_path / "j.sqlite3", B24_RATE_LIMIT="1000")) as client:
        by_anna = structured(await client.call_tool("search_messages", {"query": "export", "authorId": 1}))["hits"]
        assert [hit["messageId"] for hit in by_anna] == [786, 782]
        early = await client.call_tool("search_messages", {"query": "export", "until": "2025-03-18T09:20:00+01:00"})
        assert [hit["messageId"] for hit in structured(early)["hits"]] == [777]
        for arguments, field in [({"query": ""}, "query"), ({"query": "x", "since": "yesterday"}, "since")]:
            bad = await client.call_tool("search_messages", arguments)
            assert bad.is_error and text_of(bad).startswith(field)


async def test_get_messages_goes_back_by_count_or_time_walking_pages_with_or_without_the_journal() -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    for n in range(120):
        standin.chatter.say("chat5", 1 + n % 2, f"line {n}", f"2025-03-18T{10 + n // 60}:{n % 60:02d}:00+01:00")
    contexts: list[int] = []

    def portal(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("getContext"):
            contexts.append(1)
        return demo.answer(standin, request)

    server = build_server(config.load(webhook_vars(B24_RATE_LIMIT="1000")), transport=httpx.MockTransport(portal))
    async with Client(server) as client:
        last = structured(await client.call_tool("get_messages", {"dialogId": "chat5", "last": 110}))
        ids = [m["id"] for m in last["messages"]]
        assert len(ids) == 110 and ids == sorted(ids) and ids[-1] == max(standin.messages)
        assert last["hasPrevPage"] is True and len(contexts) == 3  # 51 + 50 + 50 read, the oldest 41 left
        since = await client.call_tool("get_messages", {"dialogId": "chat5", "since": "2025-03-18T11:55:00+01:00"})
        assert [m["text"] for m in structured(since)["messages"]] == [f"line {n}" for n in range(115, 120)]
        wrong = await client.call_tool("get_messages", {"messageId": 789, "last": 5})
        assert wrong.is_error and "dialogId" in text_of(wrong)


async def test_the_journal_s_chats_are_resources_and_its_events_are_announced(tmp_path: Path) -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    async with Client(journal_server(standin, tmp_path / "j.sqlite3", B24_RATE_LIMIT="1000"), mode="auto") as client:
        structured(await client.call_tool("list_chats", {}))
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {
            "bitrix24://chat/chat5/messages",
            "bitrix24://chat/chat12/messages",
            "bitrix24://chat/1/messages",
        } <= listed
        watched = "bitrix24://chat/chat5/messages"
        async with client.listen(resources_list_changed=True, resource_subscriptions=[watched]) as events:
            standin.chatter.say("chat5", 2, "news", "2025-03-19T09:00:00+01:00")
            age(tmp_path / "j.sqlite3")
            structured(await client.call_tool("get_updates", {}))
            with anyio.fail_after(5):
                async for event in events:
                    assert getattr(event, "uri", None) == watched
                    break
            new_chat = {"id": 40, "dialogId": "chat40", "name": "Launch", "type": "chat"}
            standin.chatter.join("chat40", new_chat, 1, "2025-03-19T09:05:00+01:00")
            age(tmp_path / "j.sqlite3")
            structured(await client.call_tool("list_chats", {}))
            with anyio.fail_after(5):
                async for event in events:
                    assert type(event).__name__ == "ResourcesListChanged"
                    break
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "bitrix24://chat/chat40/messages" in listed


async def test_the_bot_deleted_is_said_plainly(tmp_path: Path) -> None:
    standin = StandIn(bot_token=TOKEN, webhook_code=CODE)
    standin.events.push("ONIMBOTV2DELETE", "2025-03-20T10:00:00+01:00", {})
    async with Client(journal_server(standin, tmp_path / "j.sqlite3", B24_RATE_LIMIT="1000")) as client:
        result = await client.call_tool("list_chats", {})
        assert structured(result)["journal"]["botDeleted"] == "2025-03-20T10:00:00+01:00"
        assert "Bitrix24 said the bot itself was deleted (2025-03-20T10:00:00+01:00)" in text_of(result)

"""The journal store: events applied once and in place, the position committed with them, nothing secret kept,
retention, forgetting, search."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from b24_mcp.bitrix24.events import Event, EventPage
from b24_mcp.errors import ConfigError
from b24_mcp.journal.store import Journal, fts_query
from b24_mcp.journal_settings import load_journal
from b24_mcp.standin import StandIn
from tests.values import TOKEN

NOW = 1742400000.0  # 2025-03-19T16:00Z, the day after the demo's messages


def page(portal: StandIn, offset: int | None = None, limit: int = 1000) -> EventPage:
    return EventPage.model_validate(portal.events.page(offset, limit))


def journal_of(path: Path | str = ":memory:", days: int = 90) -> Journal:
    return Journal(path, days=days, clock=lambda: NOW)


def drain_all(journal: Journal, portal: StandIn, limit: int = 1000) -> None:
    for _ in range(100):
        got = page(portal, journal.position(), limit)
        journal.apply(got.events, got.nextOffset, bool(got.hasMore))
        if not got.hasMore:
            return


def texts(journal: Journal) -> dict[int, str]:
    return {row["id"]: row["text"] for row in journal.db.execute("SELECT id, text FROM messages")}


def test_joins_and_messages_make_the_chats_the_bot_is_in() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = journal_of()
    drain_all(journal, portal)
    chats = {row["dialog_id"]: row for row in journal.chats()}
    assert set(chats) == {"chat5", "chat12", "1"}  # not chat7: the bot is not in it
    assert chats["chat5"]["name"] == "Support Chat" and chats["chat5"]["last_message_id"] == 789
    readable = {m["id"] for m in portal.messages.values() if m["chatId"] in (5, 12, 31)}
    assert set(texts(journal)) == readable
    assert journal.chats()[0]["dialog_id"] == "1"  # the most recently active first


def test_applying_a_page_again_changes_nothing() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = journal_of()
    got = page(portal)
    first = journal.apply(got.events, got.nextOffset)
    again = journal.apply(got.events, got.nextOffset)
    assert first.new == len(got.events) and again.new == 0 and again.again == len(got.events)
    assert journal.db.execute("SELECT count(*) FROM changes").fetchone()[0] == len(got.events)


def test_an_edit_is_in_place_and_a_delete_removes_it_from_search() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = journal_of()
    drain_all(journal, portal)
    portal.chatter.edit(789, "Works now, merci beaucoup!", "2025-03-18T09:40:00+01:00")
    portal.chatter.delete(786, "2025-03-18T09:41:00+01:00")
    drain_all(journal, portal)
    assert texts(journal)[789] == "Works now, merci beaucoup!"
    assert 786 not in texts(journal)
    assert [hit["id"] for hit in journal.search("merci")] == [789]
    assert journal.search("tokens here") == []
    kinds = [row["kind"] for row in journal.changes(0, None, 1000)][-2:]
    assert kinds == ["edited", "deleted"]


def test_an_older_edit_replayed_never_overwrites_a_newer_one() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = journal_of()
    drain_all(journal, portal)
    portal.chatter.edit(789, "first edit", "2025-03-18T09:40:00+01:00")
    portal.chatter.edit(789, "second edit", "2025-03-18T09:41:00+01:00")
    got = page(portal, journal.position())
    first, second = got.events
    journal.apply([second], second.eventId + 1)
    journal.apply([first], second.eventId + 1)  # a replay of the older one, in its own page
    assert texts(journal)[789] == "second edit"


def test_the_position_is_stored_with_the_events_and_never_goes_back() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = journal_of()
    got = page(portal, None, 5)
    journal.apply(got.events, got.nextOffset, True)
    assert journal.position() == got.events[-1].eventId + 1
    journal.apply([], 3)
    assert journal.position() == got.events[-1].eventId + 1


def test_no_secret_is_kept(tmp_path: Path) -> None:
    portal = StandIn(bot_token=TOKEN)
    path = tmp_path / "journal.sqlite3"
    journal = journal_of(path)
    assert any(TOKEN in str(e.data) for e in page(portal).events)  # the owner's bot format: appId = custom+token
    drain_all(journal, portal)
    journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    assert TOKEN.encode() not in path.read_bytes()
    assert b"appId" not in path.read_bytes()


def test_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "journal.sqlite3"
    journal_of(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_two_connections_read_one_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    writer, reader = journal_of(path), journal_of(path)
    drain_all(writer, StandIn(bot_token=TOKEN))
    assert reader.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert reader.stats()["messages"] == writer.stats()["messages"] > 0


def test_retention_forgets_what_is_older_than_the_setting() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = Journal(":memory:", days=1, clock=lambda: 1742371200.0)  # 2025-03-19T08:00Z
    drain_all(journal, portal)
    kept = texts(journal)
    assert 2201 not in kept and 789 in kept  # 2025-03-17 is past the day; 2025-03-18 09:36 is not


def test_retention_by_count_keeps_the_newest_messages_only() -> None:
    portal = StandIn(bot_token=TOKEN)
    everything = Journal(":memory:", days=3650)
    drain_all(everything, portal)
    newest = {row[0] for row in everything.db.execute("SELECT id FROM messages ORDER BY ts DESC, id DESC LIMIT 3")}
    journal = Journal(":memory:", days=3650, messages=3)
    drain_all(journal, portal)
    assert set(texts(journal)) == newest and len(texts(everything)) > 3
    indexed = {row[0] for row in journal.db.execute("SELECT rowid FROM messages_fts")}
    assert indexed <= newest  # the full-text index forgets them too


def test_forgetting_a_chat_and_everything() -> None:
    portal = StandIn(bot_token=TOKEN)
    journal = journal_of()
    drain_all(journal, portal)
    position = journal.position()
    assert journal.forget("chat5") == 8
    assert (
        "chat5" not in {row["dialog_id"] for row in journal.chats()}
        and journal.search("export", dialog_id="chat5") == []
    )
    journal.forget()
    assert journal.stats()["messages"] == 0 and journal.chats() == []
    assert journal.position() == position  # forgetting does not re-read the queue


@pytest.mark.parametrize(
    ("data", "journaled"),
    [
        ({"message": [], "chat": [], "user": []}, False),  # what a portal writes when it could load none of them
        ({"message": {"id": 990}, "chat": {"id": 5, "dialogId": "chat5"}, "user": []}, True),  # {"id": N}
        ({"message": {"id": 991, "chatId": 5, "date": 42, "text": "odd date"}, "chat": [], "user": []}, True),
    ],
)
def test_events_as_real_portals_write_them_are_read(data: dict[str, Any], journaled: bool) -> None:
    journal = journal_of()
    event = Event.model_validate({"eventId": 5000, "type": "ONIMBOTV2MESSAGEADD", "date": None, "data": data})
    applied = journal.apply([event], 5001)
    assert applied.new == 1 and journal.position() == 5001
    assert bool(journal.stats()["messages"]) is journaled


def test_a_search_box_query_never_fails_to_parse() -> None:
    journal = journal_of()
    drain_all(journal, StandIn(bot_token=TOKEN))
    for query in ['"', "NEAR(", "text:export", "AND OR NOT", "*", "ticket #4512", ""]:
        journal.search(query)
    assert fts_query("CRM export") == '"CRM" "export"*'
    assert {hit["id"] for hit in journal.search("exp")} == {777, 782, 786, 901}
    assert [hit["id"] for hit in journal.search("4512", dialog_id="1")] == [905, 901]
    assert journal.search("export", dialog_id="chat5")[0]["snippet"].count("**") == 2


def test_a_journal_file_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=r"B24_JOURNAL_FILE .* is not in a safe place: other users can write"):
        env = {"B24_JOURNAL": "on", "B24_JOURNAL_FILE": str(shared / "journal.db")}
        load_journal(lambda name: env.get(name, ""))

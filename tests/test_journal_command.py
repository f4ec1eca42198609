"""What `check` says of the journal (on or off, where, how much, how far behind; the bot's eventMode) and what
`b24-mcp journal` shows and forgets."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from b24_mcp.bitrix24.events import EventPage
from b24_mcp.journal import command
from b24_mcp.journal.store import Journal
from b24_mcp.standin import StandIn
from tests.portal import StandInPortal
from tests.test_check import in_memory_server, run  # noqa: F401 - its autouse fixture: check's server in this process
from tests.values import CODE, TOKEN, webhook_vars


def filled(path: Path) -> Journal:
    journal = Journal(path, days=3650)
    page = EventPage.model_validate(StandIn(bot_token=TOKEN, webhook_code=CODE).events.page(None, 1000))
    journal.apply(page.events, page.nextOffset, False)
    return journal


def test_check_says_the_journal_is_on_where_and_what_it_holds(https_portal: StandInPortal, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    filled(path).close()
    env = webhook_vars(https_portal.webhook_url, B24_JOURNAL="on", B24_JOURNAL_FILE=str(path), B24_JOURNAL_DAYS="3650")
    code, out = run(env=env)
    assert code == 0, out
    assert f"✓ journal: on, {path}; 3 chats, 18 messages; the queue was read" in out
    assert "eventMode" not in out  # the stand-in's bot is registered with fetch
    assert https_portal.count("imbot.v2.Event.get") == 0  # check reads the file, never the bot's queue


def test_check_warns_when_the_journal_is_on_for_a_bot_without_fetch_mode(
    https_portal: StandInPortal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = https_portal.standin._bot_entity
    monkeypatch.setattr(
        https_portal.standin, "_bot_entity", lambda extended: {**entity(extended=extended), "eventMode": "webhook"}
    )
    env = webhook_vars(https_portal.webhook_url, B24_JOURNAL="on", B24_JOURNAL_FILE=str(tmp_path / "j.sqlite3"))
    code, out = run(env=env)
    assert code == 0, out
    assert "eventMode webhook, so imbot.v2.Event.get has no events for the journal" in out
    assert "not made yet" in out and not (tmp_path / "j.sqlite3").exists()  # nor did the round trip's server


def test_the_journal_command_shows_and_forgets(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    filled(path).close()
    env = webhook_vars(B24_JOURNAL="on", B24_JOURNAL_FILE=str(path), B24_JOURNAL_DAYS="3650")
    out = io.StringIO()
    assert command.run(env, forget=None, forget_all=False, out=out) == 0
    shown = out.getvalue()
    assert "3 chats, 18 messages" in shown and "chat5" in shown and TOKEN not in shown
    out = io.StringIO()
    assert command.run(env, forget="chat5", forget_all=False, out=out) == 0
    assert "forgot chat5: 8 messages" in out.getvalue() and "2 chats, 10 messages" in out.getvalue()
    out = io.StringIO()
    assert command.run(env, forget=None, forget_all=True, out=out) == 0
    assert "0 chats, 0 messages" in out.getvalue()
    out = io.StringIO()
    assert command.run(webhook_vars(), forget=None, forget_all=False, out=out) == 2
    assert "B24_JOURNAL=on" in out.getvalue()

"""`b24-mcp journal`: what the journal keeps (where, how much, for how long), and forgetting a chat or everything.

It reads the journal file only (no portal call): a server running meanwhile keeps draining into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TextIO

from .. import settings as config
from ..errors import ConfigError, printable, problems_of
from ..paths import default_journal_file
from .store import Journal


def _when(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def run(env: Mapping[str, str], *, forget: str | None, forget_all: bool, out: TextIO) -> int:
    """Exit status: 0 done, 2 the journal is off or a setting is wrong."""
    try:
        settings = config.load(env)
    except ConfigError as err:
        for problem in problems_of(err):
            print(f"b24-mcp journal: {problem}", file=out)
        return 2
    if settings.journal is None:
        print("b24-mcp journal: the journal is off (B24_JOURNAL=on turns it on; see docs/inbox.md)", file=out)
        return 2
    path = settings.journal.file or default_journal_file(settings.host, settings.bot_id)
    if not path.exists():
        print(
            f"b24-mcp journal: {path} does not exist yet (the server makes it when it first reads the queue)", file=out
        )
        return 0
    journal = Journal(path, days=settings.journal.days, messages=settings.journal.messages)
    try:
        if forget_all:
            print(f"forgot everything: {journal.forget()} messages (the queue position is kept)", file=out)
        elif forget is not None:
            print(f"forgot {printable(forget)}: {journal.forget(forget)} messages", file=out)
        stats = journal.stats()
        print(f"journal: {path} (mode 0600), messages kept {settings.journal.days} days (B24_JOURNAL_DAYS)", file=out)
        print(
            f"  {stats['chats']} chats, {stats['messages']} messages since {_when(stats['oldest'])}; "
            f"the queue last read {_when(stats['drained_at'])}" + (", more waiting" if stats["behind"] else ""),
            file=out,
        )
        for chat in journal.chats(limit=1000):
            count = journal.db.execute("SELECT count(*) FROM messages WHERE chat_id = ?", (chat["chat_id"],))
            name = printable(str(chat["name"] or ""))[:60]
            print(f"  {chat['dialog_id']:<12} {count.fetchone()[0]:>7} messages  {name}", file=out)
    finally:
        journal.close()
    return 0

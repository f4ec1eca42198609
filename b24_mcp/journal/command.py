"""`b24-mcp journal`: what the journal keeps (where, how much, for how long), and forgetting a chat or everything.

It reads the journal file (no portal call; a server running meanwhile keeps draining into it), or for replicas
(B24_REDIS_URL) their shared log, where forgetting is done once for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TextIO

import anyio

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
    if settings.team is not None and settings.team.redis is not None:  # replicas: the journal is the Redis log
        return anyio.run(_shared, settings, forget, forget_all, out)
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
        _show(journal, f"{path} (mode 0600)", settings.journal.days, out)
    finally:
        journal.close()
    return 0


async def _shared(settings: config.Settings, forget: str | None, forget_all: bool, out: TextIO) -> int:
    """The replicas' journal: forgetting is done in the Redis log, so every replica builds its journal anew from it."""
    from ..bitrix24.redis_state import Redis
    from .shared import SharedLog

    assert settings.journal is not None and settings.team is not None and settings.team.redis is not None
    redis = Redis(settings.team.redis)
    journal = Journal(":memory:", days=settings.journal.days, messages=settings.journal.messages)
    try:
        shared = SharedLog(redis, settings.host, settings.bot_id, days=settings.journal.days)
        if forget_all or forget is not None:
            removed = await shared.forget(None if forget_all else forget)
            what = "everything" if forget_all else printable(forget or "")
            print(f"forgot {what}: {removed} events from the replicas' log (B24_REDIS_URL)", file=out)
        after = "0"
        while entries := await shared.read(after):
            journal.apply([event for _, event in entries], 0, stream=entries[-1][0])
            after = entries[-1][0]
        _show(journal, "the replicas' log in Redis (B24_REDIS_URL)", settings.journal.days, out)
    finally:
        journal.close()
        await redis.aclose()
    return 0


def _show(journal: Journal, where: str, days: int, out: TextIO) -> None:
    """What a journal holds: where, for how long, how many chats and messages, each chat."""
    stats = journal.stats()
    print(f"journal: {where}, messages kept {days} days (B24_JOURNAL_DAYS)", file=out)
    print(
        f"  {stats['chats']} chats, {stats['messages']} messages since {_when(stats['oldest'])}; "
        f"the queue last read {_when(stats['drained_at'])}" + (", more waiting" if stats["behind"] else ""),
        file=out,
    )
    for chat in journal.chats(limit=1000):
        count = journal.db.execute("SELECT count(*) FROM messages WHERE chat_id = ?", (chat["chat_id"],))
        name = printable(str(chat["name"] or ""))[:60]
        print(f"  {chat['dialog_id']:<12} {count.fetchone()[0]:>7} messages  {name}", file=out)

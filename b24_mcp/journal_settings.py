"""The journal's settings: whether the bot's event queue is drained into a local journal, where, for how long.

Off unless B24_JOURNAL=on: only one application receives a bot's events, so draining a queue that another program
reads would take its events away. Stdlib only, like the other settings modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .paths import check_token_path

JOURNAL = "B24_JOURNAL"
JOURNAL_FILE = "B24_JOURNAL_FILE"
JOURNAL_DAYS = "B24_JOURNAL_DAYS"
JOURNAL_BACKFILL = "B24_JOURNAL_BACKFILL"
JOURNAL_MESSAGES = "B24_JOURNAL_MESSAGES"
MESSAGES_MAX = 10_000_000
DAYS_DEFAULT = 90
BACKFILL_DEFAULT, BACKFILL_MAX = 2, 20  # getContext pages (up to 50 messages each) read back when a chat appears
DAYS_MAX = 3650
MEMORY = ":memory:"  # the demo's journal: nothing on disk
_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


@dataclass(frozen=True)
class JournalConfig:
    file: Path | None  # None: the default file for the portal and bot (paths.default_journal_file)
    days: int = DAYS_DEFAULT  # messages older than this are forgotten
    backfill: int = BACKFILL_DEFAULT  # pages of a new chat's history read back (0: none)
    messages: int = 0  # at most this many messages kept, the newest (0: no limit but the days)
    memory: bool = False  # the demo: an in-memory journal


def load_journal(get: Callable[[str], str]) -> JournalConfig | None:
    """B24_JOURNAL, B24_JOURNAL_FILE, B24_JOURNAL_DAYS, B24_JOURNAL_MESSAGES, B24_JOURNAL_BACKFILL; None when off."""
    switch = get(JOURNAL).lower()
    if switch and switch not in _ON + _OFF:
        raise ConfigError(f"{JOURNAL}={get(JOURNAL)!r} must be on or off (leave it unset for off)")
    raw_file, raw_days, raw_backfill = get(JOURNAL_FILE), get(JOURNAL_DAYS), get(JOURNAL_BACKFILL)
    raw_messages = get(JOURNAL_MESSAGES)
    if switch not in _ON:
        if raw_file or raw_days or raw_backfill or raw_messages:
            raise ConfigError(
                f"{JOURNAL_FILE}, {JOURNAL_DAYS}, {JOURNAL_MESSAGES} or {JOURNAL_BACKFILL} is set but the journal is "
                f"off: set {JOURNAL}=on"
            )
        return None
    file = None
    if raw_file:
        file = Path(raw_file).expanduser()
        if not file.is_absolute():
            raise ConfigError(f"{JOURNAL_FILE}={raw_file!r} must be an absolute path, e.g. /home/you/b24-journal.db")
        check_token_path(file, JOURNAL_FILE)  # people's messages: no other user may swap or read the file
    days = DAYS_DEFAULT
    if raw_days:
        if not raw_days.isdigit() or not 1 <= int(raw_days) <= DAYS_MAX:
            raise ConfigError(f"{JOURNAL_DAYS}={raw_days!r} must be a whole number of days, 1–{DAYS_MAX}")
        days = int(raw_days)
    backfill = BACKFILL_DEFAULT
    if raw_backfill:
        if not raw_backfill.isdigit() or int(raw_backfill) > BACKFILL_MAX:
            raise ConfigError(
                f"{JOURNAL_BACKFILL}={raw_backfill!r} must be a whole number of pages, 0–{BACKFILL_MAX} (0: none)"
            )
        backfill = int(raw_backfill)
    messages = 0
    if raw_messages:
        if not raw_messages.isdigit() or not 1 <= int(raw_messages) <= MESSAGES_MAX:
            raise ConfigError(
                f"{JOURNAL_MESSAGES}={raw_messages!r} must be a whole number of messages, 1–{MESSAGES_MAX:,} "
                "(leave it unset to keep what B24_JOURNAL_DAYS keeps)"
            )
        messages = int(raw_messages)
    return JournalConfig(file=file, days=days, backfill=backfill, messages=messages)

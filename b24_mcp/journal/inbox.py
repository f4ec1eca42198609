"""The inbox the tools read: the journal, drained on demand when the last drain is older than a few seconds.

A drain that fails (the portal down, the bucket busy) does not fail the tool: the answer comes from what the journal
holds, and says how old it is and why it could not be brought up to date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import B24Error
from .drain import Drainer, Poller
from .store import Journal

log = logging.getLogger("b24_mcp.journal")

FRESH = 5.0  # seconds a drain stays fresh: an inbox tool called within them reads the journal as it is


class Inbox:
    def __init__(self, drainer: Drainer, *, clock: Callable[[], float] = time.time, fresh: float = FRESH) -> None:
        self.drainer = drainer
        self.journal: Journal = drainer.journal
        self.poller = Poller(drainer, clock=clock)
        self._clock = clock
        self._fresh = fresh
        self.updates_cursor: int | None = None  # where this server's previous get_updates answer ended

    async def fresh(self) -> str | None:
        """Drain if the last drain (by any process) is older than FRESH; a sentence when it could not."""
        try:
            await self.drainer.refresh(self._fresh, self._clock())
        except B24Error as err:
            return f"The journal could not be brought up to date just now ({err}); this is what it held."
        return None

    def close(self) -> None:
        self.journal.close()

    async def aclose(self) -> None:
        await self.drainer.aclose()
        self.journal.close()

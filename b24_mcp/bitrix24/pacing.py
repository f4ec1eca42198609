"""Client-side pacing that mirrors Bitrix24's own leaky bucket, so the portal never has to refuse us.

It runs as GCRA: each request gets its send time the moment it asks, so waiting calls go out in arrival order
with no queue, lock or background task, and each knows its wait at once (the tool reports it). Hand-written
rather than aiolimiter for those two properties, and for `saturate()`, which resynchronises us after a refusal.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol


def gcra(rate: float, burst: int) -> tuple[float, int, float]:
    """(interval between requests, capacity, tolerance) of the bucket: `burst - 1` at once, `rate` per second.

    One request of headroom: the portal counts arrivals, not our send times, and a few milliseconds of jitter
    would tip a bucket filled to exactly `burst` over."""
    if rate <= 0 or burst < 1:
        raise ValueError("rate must be > 0 and burst >= 1")
    interval = 1.0 / rate
    capacity = max(1, burst - 1)
    return interval, capacity, (capacity - 1) * interval


def tolerance(full: float, interval: float, spare: int) -> float:
    """The bucket's tolerance for a caller that must leave `spare` slots free."""
    return full - spare * interval


OnWait = Callable[[float, str], Awaitable[None]]
"""Told (seconds, why) before each wait, so the tool layer can report progress."""


class SharedBucket(Protocol):
    """`LeakyBucket`'s interface, awaited: a bucket kept outside the process (see `redis_state.RedisBucket`)."""

    async def reserve(self, max_wait: float = float("inf"), spare: int = 0) -> float | None: ...

    async def release(self) -> None: ...

    async def saturate(self) -> None: ...


class LeakyBucket:
    """At most `burst - 1` requests at once (one of headroom; `burst` 1 means one), `rate` per second sustained."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval, self.capacity, self._tolerance = gcra(rate, burst)
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tat = clock()  # theoretical arrival time of the next request when the bucket is drained

    def reserve(self, max_wait: float = float("inf"), spare: int = 0) -> float | None:
        """Take the next slot if it comes within `max_wait` seconds; return the wait (0 = at once). With `spare`,
        only while that many slots stay free for others: how background calls (the journal's) go last.

        None, and nothing taken, when the slot is further off: a call that will not wait must not push every
        later caller back (a burst of refused calls would otherwise keep an idle portal's bucket "full").
        A free slot is always taken, even with no time left to wait (`max_wait` <= 0): it costs no one anything,
        and the caller's own deadline, not "too many calls at once", is what ends such a call.
        """
        now = self._clock()
        tat = max(self._tat, now)
        send_at = max(now, tat - tolerance(self._tolerance, self._interval, spare))
        if send_at > now and send_at - now > max_wait:
            return None
        self._tat = tat + self._interval
        return send_at - now

    def release(self) -> None:
        """Give back a slot that was taken but not used (its caller gave up or was cancelled while waiting)."""
        self._tat = max(self._clock(), self._tat - self._interval)

    def saturate(self) -> None:
        """The portal said its bucket is full: behave as if ours were too, so what follows is paced at `rate`."""
        now = self._clock()
        self._tat = max(self._tat, now + self._tolerance + self._interval)

    @property
    def level(self) -> float:
        """Requests currently counted in the bucket (0..capacity), as the portal would count them."""
        return max(0.0, (self._tat - self._clock()) * self.rate)


class LocalBucket:
    """The in-process `LeakyBucket` behind `SharedBucket`'s awaited interface: the client has one code path."""

    def __init__(self, bucket: LeakyBucket) -> None:
        self.bucket = bucket

    async def reserve(self, max_wait: float = float("inf"), spare: int = 0) -> float | None:
        return self.bucket.reserve(max_wait, spare)

    async def release(self) -> None:
        self.bucket.release()

    async def saturate(self) -> None:
        self.bucket.saturate()

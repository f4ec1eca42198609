"""The client-side leaky bucket, on a fake clock: burst, sustained rate, FIFO, resynchronisation."""

from __future__ import annotations

import pytest

from b24_mcp.bitrix24.pacing import LeakyBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait(bucket: LeakyBucket) -> float:
    delay = bucket.reserve()
    assert delay is not None  # no max_wait: every caller gets a slot
    return delay


def test_burst_goes_at_once_then_rate() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=2, burst=5, clock=clock)
    waits = [bucket.reserve() for _ in range(8)]
    assert waits[:4] == [0, 0, 0, 0]  # burst - 1: one request of headroom below the portal's bucket
    assert waits[4:] == pytest.approx([0.5, 1.0, 1.5, 2.0])  # then one every 1/rate, in arrival order


def test_bucket_drains_with_time() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=2, burst=4, clock=clock)
    for _ in range(3):
        bucket.reserve()
    assert bucket.level == pytest.approx(3)
    clock.now += 1.0  # two drained
    assert bucket.level == pytest.approx(1)
    assert [bucket.reserve(), bucket.reserve(), bucket.reserve()] == pytest.approx([0, 0, 0.5])


def test_never_more_than_burst_in_the_portals_bucket() -> None:
    """Replay the sends against the portal's own rule: +1 per request, drained `rate`/s, refuse above burst."""
    clock = Clock()
    rate, burst = 2.0, 4
    bucket = LeakyBucket(rate=rate, burst=burst, clock=clock)
    sends = sorted(clock.now + wait(bucket) for _ in range(40))
    level, last = 0.0, sends[0]
    for t in sends:
        level = max(0.0, level - (t - last) * rate) + 1
        last = t
        assert level <= burst - 1 + 1e-9  # one request of headroom for arrival jitter
    assert sends[-1] - sends[0] == pytest.approx((40 - (burst - 1)) / rate)  # and no slower than that


def test_saturate_resynchronises_with_a_full_portal() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=2, burst=10, clock=clock)
    assert bucket.reserve() == 0
    bucket.saturate()  # the portal said QUERY_LIMIT_EXCEEDED: it is full even if we thought not
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)


def test_a_caller_that_would_wait_too_long_takes_no_slot() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=2, burst=3, clock=clock)
    assert [bucket.reserve(), bucket.reserve()] == [0, 0]
    assert bucket.reserve(max_wait=0.4) is None  # the next slot is 0.5 s away
    assert bucket.reserve(max_wait=0.4) is None  # ...and still is: the refusal pushed nobody back
    assert bucket.reserve(max_wait=0.5) == pytest.approx(0.5)


def test_a_released_slot_goes_to_the_next_caller() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=2, burst=2, clock=clock)
    assert [bucket.reserve(), bucket.reserve()] == pytest.approx([0, 0.5])
    bucket.release()  # the second caller was cancelled while waiting
    assert bucket.reserve() == pytest.approx(0.5)


def test_burst_of_one_still_sends() -> None:
    bucket = LeakyBucket(rate=4, burst=1, clock=Clock())
    assert [bucket.reserve(), bucket.reserve()] == pytest.approx([0, 0.25])


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LeakyBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        LeakyBucket(rate=1, burst=0)

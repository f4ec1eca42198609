"""The retry policy on its own: what follows each refusal of a call, with the back-off handed in.

No HTTP and no waiting: each test feeds refusals to one call's `Tries` and reads the decisions. How the client
acts on them (the requests sent, the log lines, the waits) is tested in test_client.py and test_request_log.py.
"""

from __future__ import annotations

import time

import pytest

from b24_mcp.bitrix24.retry import RetryPolicy, jittered
from b24_mcp.errors import POLICIES, AnswerError, PortalError, UpstreamError
from tests.values import at_once

LATER = 1e9  # a deadline (monotonic) no test reaches

TRANSIENT = UpstreamError("Bitrix24 at portal.test did not answer in time.", retryable=True)
LIMIT = PortalError("Too many requests.", code="QUERY_LIMIT_EXCEEDED", status=503)
EXPIRED = PortalError("The token expired.", code="expired_token", status=401)
TIME_LIMIT = PortalError("Method time budget used up.", code="OPERATION_TIME_LIMIT", status=503)


def test_each_rule_retries_as_often_as_its_policy_says_then_gives_up() -> None:
    tries = RetryPolicy(at_once).start(oauth=False)
    thens = [tries.decide(TRANSIENT, "scope", None, time.monotonic() + LATER).then for _ in range(3)]
    assert thens == ["retry 1 in 0.0 s", "retry 2 in 0.0 s", "giving up after 3 tries"]
    assert POLICIES["transient"].tries == 2


def test_a_final_refusal_ends_the_call_as_it_is() -> None:
    refusal = AnswerError("Bitrix24 at portal.test answered with NaN.")
    decision = RetryPolicy(at_once).start(oauth=False).decide(refusal, "scope", None, time.monotonic() + LATER)
    assert (decision.then, decision.error) == ("not retried", refusal)


def test_the_back_off_handed_in_sets_each_wait() -> None:
    seen: list[tuple[int, float, float]] = []

    def backoff(attempt: int, base: float, cap: float) -> float:
        seen.append((attempt, base, cap))
        return attempt / 10

    tries = RetryPolicy(backoff).start(oauth=False)
    delays = [tries.decide(LIMIT, "scope", None, time.monotonic() + LATER).delay for _ in range(3)]
    assert delays == [0.1, 0.2, 0.3]
    limit = POLICIES["rate_limit"]
    assert seen == [(1, limit.base, limit.cap), (2, limit.base, limit.cap), (3, limit.base, limit.cap)]


def test_a_rate_limit_given_up_says_how_many_tries() -> None:
    tries = RetryPolicy(at_once).start(oauth=False)
    decisions = [
        tries.decide(LIMIT, "scope", None, time.monotonic() + LATER) for _ in range(POLICIES["rate_limit"].tries + 1)
    ]
    assert all(d.error is None and d.rule == "rate_limit" for d in decisions[:-1])
    last = decisions[-1].error
    assert isinstance(last, PortalError) and f"gave up after {len(decisions)} tries" in str(last)
    assert tries.refusal is LIMIT  # what the client reports if a retry cannot get its turn in time


def test_a_wait_past_the_deadline_ends_the_call_with_the_refusal() -> None:
    tries = RetryPolicy(lambda attempt, base, cap: 5.0).start(oauth=False)
    decision = tries.decide(TRANSIENT, "scope", None, time.monotonic() + 1.0)
    assert (decision.then, decision.error) == ("no time left for a retry", TRANSIENT)


def test_a_renewed_token_counts_across_the_calls_other_retries() -> None:
    """A call that alternates a rejected token with a transient failure still ends: one renewal per call."""
    tries = RetryPolicy(at_once).start(oauth=True)
    decisions = [tries.decide(e, "scope", None, time.monotonic() + LATER) for e in (EXPIRED, TRANSIENT, EXPIRED)]
    assert [d.then for d in decisions] == [
        "renewing the OAuth token, then retrying",
        "retry 1 in 0.0 s",
        "giving up after 2 tries",
    ]
    assert decisions[-1].error is EXPIRED


def test_a_rejected_token_is_final_for_a_webhook() -> None:
    decision = RetryPolicy(at_once).start(oauth=False).decide(EXPIRED, "scope", None, time.monotonic() + LATER)
    assert decision.then == "not retried"


@pytest.mark.parametrize(("reset_in", "waits"), [(2.0, True), (None, False), (30.0, False)])
def test_a_method_time_limit_is_waited_out_only_when_its_reset_fits(reset_in: float | None, waits: bool) -> None:
    reset_at = None if reset_in is None else time.time() + reset_in
    decision = RetryPolicy(at_once).start(oauth=False).decide(TIME_LIMIT, "im.x", reset_at, time.monotonic() + 10.0)
    if waits:
        assert decision.error is None and 1.0 < decision.delay <= 2.0
    else:
        assert decision.then == "not waited: its time budget resets too late"
        assert isinstance(decision.error, PortalError) and "im.x is available again" in str(decision.error)


def test_the_jittered_back_off_stays_between_half_and_all_of_its_ceiling() -> None:
    for attempt in range(1, 8):
        ceiling = min(8.0, 0.5 * 2.0 ** (attempt - 1))
        assert ceiling / 2 <= jittered(attempt, 0.5, 8.0) <= ceiling

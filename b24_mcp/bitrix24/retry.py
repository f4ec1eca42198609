"""Whether a refused request is sent again, and after how long: the retry policy, with its back-off passed in.

`errors.classify` names a refusal's rule, `errors.POLICIES` how often each rule repeats a call. One call's
`Tries` count every kind of retry together, so a call that alternates refusals still ends. The back-off is a
parameter, as the bucket's clock is (`LeakyBucket(clock=…)`): a test of retries hands in one that does not wait.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import POLICIES, B24Error, PortalError, Rule, available_later, classify

Backoff = Callable[[int, float, float], float]
"""(attempt, base, cap) -> seconds to wait before the `attempt`-th retry under a rule."""


def jittered(attempt: int, base: float, cap: float) -> float:
    """Exponential back-off with jitter, so that refused callers do not come back in lockstep."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class Decision:
    """What follows a refusal: the call ends with `error`, or is sent again under `rule` after `delay` seconds."""

    then: str  # for the request's log line
    error: B24Error | None = None
    rule: Rule = "final"  # the rule it was counted under, unless that rule's tries are used up
    delay: float = 0.0


class RetryPolicy:
    """Which refusals are tried again and how long each waits; one per client, `start` one `Tries` per call."""

    def __init__(self, backoff: Backoff = jittered) -> None:
        self.backoff = backoff

    def start(self, *, oauth: bool) -> Tries:
        return Tries(self, oauth=oauth)


class Tries:
    """One call's refusals so far: `decide` what follows each, `refusal` the one being retried."""

    def __init__(self, policy: RetryPolicy, *, oauth: bool) -> None:
        self._backoff = policy.backoff
        self._oauth = oauth
        self._used: Counter[Rule] = Counter()
        self.refusal: B24Error | None = None  # what to report if the retry cannot get its turn in time

    def decide(self, err: B24Error, method: str, reset_at: float | None, deadline: float) -> Decision:
        """The rule for `err`, its count so far, and the wait before the next try, all within `deadline`
        (monotonic); `reset_at` is when the method's time budget resets (unix time), if the portal said."""
        rule = classify(err, oauth=self._oauth)
        if rule == "final":
            return Decision("not retried", err)
        self._used[rule] += 1
        tries, policy = self._used[rule], POLICIES[rule]
        self.refusal = err
        if tries > policy.tries:
            return Decision(f"giving up after {tries} tries", err.gave_up(tries) if rule == "rate_limit" else err)
        if rule == "reauth":
            return Decision("renewing the OAuth token, then retrying", rule=rule)
        if rule == "wait_reset":
            assert isinstance(err, PortalError)
            wait = None if reset_at is None else max(0.0, reset_at - time.time())
            if wait is None or wait >= deadline - time.monotonic():
                return Decision("not waited: its time budget resets too late", available_later(err, method, wait), rule)
            delay = wait
        else:
            delay = self._backoff(tries, policy.base, policy.cap)
        if delay >= deadline - time.monotonic():
            return Decision("no time left for a retry", err, rule)
        return Decision(f"retry {tries} in {delay:.1f} s", rule=rule, delay=delay)

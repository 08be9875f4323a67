"""RetryPolicy on a fake clock: only ServingUnavailable is retried, all within one deadline."""

from __future__ import annotations

import pytest

from recommender_client.client import InvalidRequest, RetryPolicy, ServingTimeout, ServingUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(clock: FakeClock, outcomes: list, cost: float = 0.01):
    seen: list[float] = []

    def attempt(left: float):
        seen.append(round(left, 6))
        clock.now += cost
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt, seen


def test_backoff_doubles_and_each_attempt_gets_the_time_left():
    clock = FakeClock()
    policy = RetryPolicy(retries=3, backoff=0.1, sleep=clock.sleep, clock=clock)
    attempt, seen = failing(clock, [ServingUnavailable("down")] * 3 + ["ok"])
    assert policy.run(attempt, timeout=5.0, what="x") == "ok"
    assert clock.sleeps == [0.1, 0.2, 0.4]
    assert seen == [5.0, 4.89, 4.68, 4.27]


def test_no_retry_when_the_pause_would_cross_the_deadline():
    clock = FakeClock()
    policy = RetryPolicy(retries=5, backoff=0.2, sleep=clock.sleep, clock=clock)
    attempt, seen = failing(clock, [ServingUnavailable("down", code="UNAVAILABLE")] * 6)
    with pytest.raises(ServingUnavailable, match=r"down \(gave up after 2 attempt\(s\)\)") as info:
        policy.run(attempt, timeout=0.5, what="x")
    assert clock.sleeps == [0.2] and len(seen) == 2 and info.value.code == "UNAVAILABLE"


def test_other_errors_are_raised_at_once():
    clock = FakeClock()
    policy = RetryPolicy(retries=3, sleep=clock.sleep, clock=clock)
    attempt, seen = failing(clock, [InvalidRequest("bad")])
    with pytest.raises(InvalidRequest, match="bad"):
        policy.run(attempt, timeout=1.0, what="x")
    assert clock.sleeps == [] and len(seen) == 1


def test_unavailable_past_the_deadline_is_not_retried():
    clock = FakeClock()
    policy = RetryPolicy(retries=2, backoff=0.0, sleep=clock.sleep, clock=clock)
    attempt, seen = failing(clock, [ServingUnavailable("down")] * 3, cost=0.6)
    with pytest.raises(ServingUnavailable, match=r"gave up after 2 attempt"):
        policy.run(attempt, timeout=1.0, what="x")
    assert seen == [1.0, 0.4]


def test_deadline_spent_by_an_oversleeping_pause_is_a_timeout():
    clock = FakeClock()

    def oversleep(seconds: float) -> None:
        clock.now += seconds + 1.0  # a loaded machine woke us late

    policy = RetryPolicy(retries=2, backoff=0.1, sleep=oversleep, clock=clock)
    attempt, seen = failing(clock, [ServingUnavailable("down")] * 3)
    with pytest.raises(ServingTimeout, match="deadline of 1s passed before attempt 2"):
        policy.run(attempt, timeout=1.0, what="x")
    assert len(seen) == 1


def test_bad_policy_arguments():
    with pytest.raises(ValueError, match="retries must be an int >= 0"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=float("nan"))

"""Retries with jitter drawn from the RNG passed in, and a retry budget that stops retry storms
(issue 18 item 2), on a fake clock and against a real gRPC server that refuses every call."""

from __future__ import annotations

import numpy as np
import pytest

from recommender_client.client import GrpcClient, RetryPolicy, ServingUnavailable
from recommender_client.client.retry_budget import RetryBudget
from tests.recommender_client.scripted_tfs import Script, scripted_server

from .test_retry import FakeClock, failing


def test_pauses_are_uniform_below_the_doubling_ceiling_from_the_rng_given() -> None:
    clock = FakeClock()
    policy = RetryPolicy(retries=3, backoff=0.1, rng=np.random.default_rng(7), sleep=clock.sleep, clock=clock)
    attempt, _ = failing(clock, [ServingUnavailable("down")] * 3 + ["ok"])
    assert policy.run(attempt, timeout=5.0, what="x") == "ok"
    same = np.random.default_rng(7)  # the independent route: the same draws by hand
    assert clock.sleeps == [same.uniform(0, 0.1), same.uniform(0, 0.2), same.uniform(0, 0.4)]
    assert all(0 <= p < c for p, c in zip(clock.sleeps, (0.1, 0.2, 0.4), strict=True))
    other = FakeClock()
    RetryPolicy(retries=3, backoff=0.1, rng=np.random.default_rng(8), sleep=other.sleep, clock=other).run(
        failing(other, [ServingUnavailable("down")] * 3 + ["ok"])[0], timeout=5.0, what="x"
    )
    assert other.sleeps != clock.sleeps  # two replicas with different seeds do not retry in step


def test_budget_tokens_by_hand() -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    assert [budget.record_failure() for _ in range(3)] == [True, False, False]  # 3 > 2, 2, 1
    assert budget.tokens == 1.0
    for _ in range(3):
        budget.record_success()
    assert budget.tokens == 2.5 and budget.record_failure() is False  # 1.5 left
    with pytest.raises(ValueError, match="max_tokens"):
        RetryBudget(max_tokens=0)


def test_no_retry_past_the_minimum_budget() -> None:
    clock = FakeClock()
    policy = RetryPolicy(retries=3, backoff=0.0, min_attempt_s=0.05, sleep=clock.sleep, clock=clock)
    attempt, seen = failing(clock, [ServingUnavailable("down")] * 4, cost=0.03)
    with pytest.raises(ServingUnavailable, match=r"gave up after 3 attempt"):
        policy.run(attempt, timeout=0.12, what="x")
    assert seen == [0.12, 0.09, 0.06]  # a 4th attempt would start with 0.03 s < 0.05 s


def test_a_refusing_server_sees_the_budget_not_three_calls_each() -> None:
    """retries=2 against a server answering UNAVAILABLE: 3 calls made 9 attempts; with a budget of
    4 tokens the first call retries once (3 > 2 tokens), then nothing is retried: 4 attempts."""
    with scripted_server(Script(abort="UNAVAILABLE")) as (script, port):
        policy = RetryPolicy(retries=2, backoff=0.001, budget=RetryBudget(max_tokens=4, token_ratio=0.1))
        with GrpcClient(f"127.0.0.1:{port}", timeout=2.0, retry_policy=policy) as client:
            messages = []
            for _ in range(3):
                with pytest.raises(ServingUnavailable) as info:
                    client.predict({"x": np.ones(2, np.float32)}, model_name="m")
                messages.append(info.value.message)
    assert script.calls["Predict"] == 4
    assert messages[0].endswith("(gave up after 2 attempt(s), retry budget spent)")
    assert messages[2].endswith("(gave up after 1 attempt(s), retry budget spent)")

"""One request deadline across Predict chunks, the minimum budget and what the breaker counts
(issue 18 item 2), against real gRPC servers that sleep or refuse."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommender_client.breaker import BreakerState, CircuitBreaker
from recommender_client.client import GrpcClient
from recommender_client.client.grpc_aio_client import AsyncGrpcClient
from recommender_client.ranking import ScoringError, ServingScorer
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.conftest import T
from tests.recommender_client.scripted_tfs import Script, scripted_server

X = np.arange(10, dtype=np.float32)


def scorer(port: int, *, chunk_size: int, timeout_s: float, async_client: object = None) -> ServingScorer:
    client = GrpcClient(f"127.0.0.1:{port}", timeout=timeout_s, retries=0)
    return ServingScorer(
        client, model_name="ctr", chunk_size=chunk_size, timeout_s=timeout_s, async_client=async_client
    )


def test_async_chunks_run_concurrently_within_one_deadline() -> None:
    """Five 0.2 s chunks against a 0.3 s deadline: today they ran one after another (1.0 s)."""
    with scripted_server(Script(delay_s=0.2)) as (script, port):

        async def main() -> tuple[np.ndarray, float]:
            aio = AsyncGrpcClient(f"127.0.0.1:{port}", timeout=0.3, retries=0)
            try:
                s = scorer(port, chunk_size=2, timeout_s=0.3, async_client=aio)
                started = time.monotonic()
                result = await s.score_result_async({"x": X}, [str(i) for i in range(10)], timeout=0.3)
                return result.scores, time.monotonic() - started
            finally:
                await aio.close()

        scores, took = asyncio.run(main())
    np.testing.assert_array_equal(scores, 0.5 * X)  # chunks reassembled in order
    assert script.calls["Predict"] == 5 and script.max_in_flight == 5
    assert took < 0.6


def test_sync_chunks_share_the_deadline_and_the_timeout_is_ours() -> None:
    """Sequential chunks get only the time left: chunk 2 has ~0.1 s, so the call ends by 0.3 s."""
    with scripted_server(Script(delay_s=0.2)) as (script, port):
        s = scorer(port, chunk_size=2, timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ScoringError, match="DEADLINE_EXCEEDED") as info:
            s.score({"x": X}, [str(i) for i in range(10)], timeout=0.3)
        took = time.monotonic() - started
    assert info.value.reason == "timeout" and info.value.server_fault is False  # 0.3 < 0.5: our cut
    assert script.calls["Predict"] == 2 and took < 0.6


def test_no_call_below_the_minimum_budget() -> None:
    """1 ms left (the minimum is 2 ms): the scorer degrades without calling; today it sent it."""
    with scripted_server() as (script, port):
        s = scorer(port, chunk_size=10, timeout_s=0.25)
        with pytest.raises(ScoringError, match=r"not sent: 1\.\d\d ms left, below the 2\.00 ms") as info:
            s.score({"x": X}, [str(i) for i in range(10)], timeout=0.001999)
        assert s.score({"x": X[:2]}, ["a", "b"]).tolist() == [0.0, 0.5]  # a normal call still works
    assert info.value.reason == "deadline" and info.value.server_fault is False
    assert script.calls["Predict"] == 1


def test_breaker_outcomes() -> None:
    """What the breaker counts: None succeeds, server faults fail, our own cuts are neutral."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=60, clock=lambda: 0.0)
    breaker.record(ScoringError("ours", reason="timeout", server_fault=False))
    breaker.record(asyncio.CancelledError())
    assert breaker.state is BreakerState.CLOSED
    breaker.record(ScoringError("mismatch", reason="invalid_request"))
    assert breaker.state is BreakerState.OPEN


def test_a_neutral_outcome_frees_the_half_open_trial() -> None:
    """A trial call that was never sent must not leave the breaker half-open with no trial left."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=lambda: now[0])
    breaker.record(ScoringError("down", reason="unavailable"))
    now[0] = 10.0
    assert breaker.allow() is True and breaker.allow() is False  # the one trial is reserved
    breaker.record(ScoringError("not sent", reason="deadline", server_fault=False))
    assert breaker.state is BreakerState.HALF_OPEN and breaker.allow() is True
    breaker.record(None)
    assert breaker.state is BreakerState.CLOSED


def app_settings(artifacts_dir: Path, port: int, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "artifacts_dir": artifacts_dir,
        "fixed_now": T,
        "grpc_target": f"127.0.0.1:{port}",
        "quota_itemcf": 2,
        "quota_category_popularity": 2,
        "quota_new": 1,
        "quota_popularity": 10,
        "max_candidates": 10,
        "breaker_failure_threshold": 2,
        "breaker_cooldown_s": 60,
        "retries": 0,
        "model_poll_interval_s": 60,
    }
    return Settings(**(base | overrides))


def test_recommend_keeps_the_request_deadline_with_five_chunks(artifacts_dir: Path) -> None:
    """Five one-row chunks, each 0.2 s, in a 0.3 s request: scored in ~0.2 s, not degraded."""
    with scripted_server(Script(delay_s=0.2)) as (script, port):
        settings = app_settings(
            artifacts_dir, port, predict_chunk_size=1, request_deadline_s=0.3, predict_timeout_s=0.3
        )
        with TestClient(create_app(settings)) as client:
            started = time.monotonic()
            body = client.post("/recommend", json={"user_id": "u2", "k": 5}).json()
            took = time.monotonic() - started
    assert body["degraded"] is False and [i["score"] for i in body["items"]] == [0.25] * 5
    assert script.calls["Predict"] == 5 and took < 0.6


def test_our_own_deadline_does_not_open_the_breaker_but_a_slow_server_does(artifacts_dir: Path) -> None:
    """Timeouts caused by a short request deadline are ours; with the full per-call timeout, the server's."""
    with scripted_server(Script(delay_s=0.15)) as (script, port):
        ours = app_settings(artifacts_dir, port, request_deadline_s=0.05, predict_timeout_s=0.25)
        with TestClient(create_app(ours)) as client:
            reasons = [client.post("/recommend", json={"user_id": "u2", "k": 3}).json() for _ in range(4)]
            assert [b["degraded_reason"] for b in reasons] == ["timeout"] * 4
            assert client.app.state.recommender.breaker.state is BreakerState.CLOSED
        slow = app_settings(artifacts_dir, port, request_deadline_s=1.0, predict_timeout_s=0.05)
        with TestClient(create_app(slow)) as client:
            reasons = [client.post("/recommend", json={"user_id": "u2", "k": 3}).json() for _ in range(3)]
            assert [b["degraded_reason"] for b in reasons] == ["timeout", "timeout", "circuit_open"]
            assert client.app.state.recommender.breaker.state is BreakerState.OPEN


def test_invalid_request_counts_as_a_failure(artifacts_dir: Path) -> None:
    """A contract/model mismatch (INVALID_ARGUMENT) opens the breaker; it used to count as a success."""
    with scripted_server(Script(abort="INVALID_ARGUMENT")) as (script, port):
        with TestClient(create_app(app_settings(artifacts_dir, port))) as client:
            bodies = [client.post("/recommend", json={"user_id": "u2", "k": 3}).json() for _ in range(3)]
            state = client.app.state.recommender.breaker.state
    assert [b["degraded_reason"] for b in bodies] == ["invalid_request", "invalid_request", "circuit_open"]
    assert state is BreakerState.OPEN and script.calls["Predict"] == 2

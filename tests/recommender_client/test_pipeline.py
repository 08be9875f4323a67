"""The whole pipeline on the tiny artefacts with the local scorer; degradation and the breaker."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recommender_client.breaker import BreakerState, CircuitBreaker
from recommender_client.features import FeatureJoiner, InMemoryFeatureStore
from recommender_client.pipeline import Batch, Pipeline, PipelineError, RankRequest
from recommender_client.ranking import LocalScorer, ServingScorer
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.recommender import RecallConfig, Recommender
from recommender_client.rerank.reload import RuleBook
from recommender_client.stages import JoinFeatures, OrderByScore, TruncateToK
from tests.recommender_client.conftest import T

QUOTAS = {"itemcf": 2, "category_popularity": 2, "new": 1, "popularity": 10}
RULES = """
rules:
  - {name: ban-i1, type: blacklist, items: [i1]}
  - {name: live, type: filter_unpublished}
  - {name: boost-bc, type: boost, multiplier: 1.2, categories: [b, c]}
  - {name: pin-i4, type: pin, item: i4, position: 1}
"""


def sigmoid_log1p(pop: float) -> float:
    return (1 + pop) / (2 + pop)  # sigmoid(log1p(p)) = (1 + p) / (2 + p)


def make(contract, artifacts: RecallArtifacts, **kwargs) -> Recommender:
    return Recommender(
        contract=contract,
        artifacts=artifacts,
        scorer=kwargs.pop("scorer", LocalScorer(artifacts.popularity_of(), intercept=0.0, slope=1.0)),
        recall=RecallConfig(quotas=QUOTAS, max_candidates=10),
        **kwargs,
    )


def test_pipeline_checks_requirements_at_construction(contract, loaded) -> None:
    join = JoinFeatures(FeatureJoiner(contract, InMemoryFeatureStore.from_artifacts(loaded)))
    with pytest.raises(PipelineError, match=r"stage 0 \(JoinFeatures\) requires \['items'\]"):
        Pipeline([join])
    with pytest.raises(PipelineError, match=r"stage 1 \(OrderByScore\) requires \['rank_score'\]"):
        Pipeline([join, OrderByScore()], provided={"items"})
    assert "model_inputs" in Pipeline([join, TruncateToK()], provided={"items"}).available


def test_local_scorer_is_logistic_in_log_popularity(loaded) -> None:
    scorer = LocalScorer({"a": 0.0, "b": math.e - 1}, intercept=-1.0, slope=2.0)
    scores = scorer.score({}, ["a", "b", "zz"])
    np.testing.assert_allclose(
        scores, [1 / (1 + math.e), 1 / (1 + math.exp(-1)), 1 / (1 + math.e)], rtol=1e-6
    )
    with pytest.raises(ValueError, match="bad items \\['x'\\]"):
        LocalScorer({"x": -1.0})


def test_model_order_without_rules(contract, loaded) -> None:
    batch, _ = make(contract, loaded).recommend(RankRequest(user_id="u2", k=10, now=T))
    # recall: i3 itemcf, i2 category, i5 new, i6 popularity, i1 category (see test_recall's merge)
    # scores (1+p)/(2+p): i2 .75, i3 = i6 = 2/3 (recall order breaks the tie), i1 .636, i5 .5
    assert batch.items == ("i2", "i3", "i6", "i1", "i5")
    expected = [sigmoid_log1p(p) for p in (2.0, 1.0, 1.0, 0.75, 0.0)]
    np.testing.assert_allclose(batch.columns["model_score"], expected, rtol=1e-6)
    assert batch.columns["recall_source"].tolist() == [
        "category_popularity",
        "itemcf",
        "popularity",
        "category_popularity",
        "new",
    ]
    assert batch.columns["pre_rerank_position"].tolist() == [0, 1, 2, 3, 4]
    assert batch.values["degraded"] is False and batch.values["user_known"] is True
    assert batch.rules == ((),) * 5


def test_rules_filter_boost_and_pin(tmp_path: Path, contract, loaded) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    rec = make(contract, loaded, rules=RuleBook(tmp_path / "rules.yaml"))
    batch, ruleset = rec.recommend(RankRequest(user_id="u2", k=5, now=T))
    # i1 banned, i6 not yet published (T + 1 day); i3 (b) 2/3 * 1.2 = .8 overtakes i2 (.75), i5 (c) .5 * 1.2;
    # i4 was not recalled: the pin brings it from the catalogue to position 1
    assert batch.items == ("i3", "i4", "i2", "i5")
    np.testing.assert_allclose(batch.columns["rank_score"][[0, 2, 3]], [0.8, 0.75, 0.6], rtol=1e-6)
    assert batch.columns["pre_rerank_position"].tolist() == [1, -1, 0, 4]
    assert batch.rules == (("boost-bc",), ("pin-i4",), (), ("boost-bc",))
    assert batch.values["removed"] == {"i1", "i6"}
    assert ruleset.digest == rec.current_rules().digest
    again, _ = rec.recommend(RankRequest(user_id="u2", k=5, now=T))
    assert again.items == batch.items


def test_explicit_candidates_and_cold_start(contract, loaded) -> None:
    batch, _ = make(contract, loaded).recommend(
        RankRequest(user_id="stranger", k=3, now=T, candidates=("i5", "zz", "i5", "i2"))
    )
    assert batch.items == ("i2", "i5", "zz")  # zz: unknown item, popularity 0 like i5, later in the list
    assert batch.columns["recall_source"].tolist() == ["request"] * 3
    assert batch.values["user_known"] is False
    assert batch.values["model_inputs"]["user_id"].tolist() == ["stranger"] * 3
    assert batch.columns["item_known"].tolist() == [True, True, False]


def test_cold_start_user_gets_popularity_and_new_items(contract, loaded) -> None:
    batch, _ = make(contract, loaded).recommend(RankRequest(user_id="stranger", k=10, now=T))
    assert set(batch.items) == {"i2", "i3", "i6", "i1", "i5"}
    assert set(batch.columns["recall_source"].tolist()) == {"popularity", "new"}


def test_deadline_passed_degrades_to_recall_order(contract, loaded) -> None:
    batch, _ = make(contract, loaded).recommend(RankRequest(user_id="u2", k=10, now=T, deadline=0.0))
    assert batch.values["degraded"] is True and batch.values["degraded_reason"] == "deadline"
    assert batch.items == ("i3", "i2", "i5", "i6", "i1")
    assert np.isnan(batch.columns["model_score"]).all()


def test_popularity_fallback(contract, loaded) -> None:
    fallback = LocalScorer(loaded.popularity_of(), intercept=0.0, slope=1.0)
    batch, _ = make(contract, loaded, fallback=fallback).recommend(
        RankRequest(user_id="u2", k=10, now=T, deadline=0.0)
    )
    assert batch.values["degraded"] is True and batch.items == ("i2", "i3", "i6", "i1", "i5")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a hung model server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def serving_scorer(url: str) -> ServingScorer:
    from recommender_client.client import RestClient

    return ServingScorer(RestClient(base_url=url, timeout=0.3, retries=0), model_name="ctr")


def test_server_down_and_hung_degrade_and_trip_the_breaker(contract, loaded, black_hole: int) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=clock)
    down = serving_scorer(f"http://127.0.0.1:{free_port()}")
    rec = make(contract, loaded, scorer=down, breaker=breaker, predict_timeout_s=0.2)
    first, _ = rec.recommend(RankRequest(user_id="u2", k=10, now=T))
    assert first.values["degraded_reason"] == "unavailable" and first.items == ("i3", "i2", "i5", "i6", "i1")
    hung = make(
        contract,
        loaded,
        scorer=serving_scorer(f"http://127.0.0.1:{black_hole}"),
        breaker=breaker,
        predict_timeout_s=0.2,
    )
    second, _ = hung.recommend(RankRequest(user_id="u2", k=10, now=T))
    assert second.values["degraded_reason"] == "timeout"
    assert breaker.state is BreakerState.OPEN
    third, _ = rec.recommend(RankRequest(user_id="u2", k=10, now=T))
    assert third.values["degraded_reason"] == "circuit_open"
    assert down.status(timeout=0.2) == "UNAVAILABLE"
    down.close()


def test_exposures_feed_the_frequency_cap(tmp_path: Path, contract, loaded) -> None:
    (tmp_path / "rules.yaml").write_text(
        "rules: [{name: cap, type: frequency_cap, max_impressions: 1, period_hours: 1}]"
    )
    rec = make(contract, loaded, rules=RuleBook(tmp_path / "rules.yaml"))
    first, _ = rec.recommend(RankRequest(user_id="u2", k=2, now=T))
    second, _ = rec.recommend(RankRequest(user_id="u2", k=2, now=T + 60))
    assert first.items == ("i2", "i3") and second.items == ("i6", "i1")
    third, _ = rec.recommend(RankRequest(user_id="u2", k=2, now=T + 2 * 3600))  # the hour has passed
    assert third.items == ("i2", "i3")


class FakeClock:
    """A settable clock (the breaker takes any callable)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_states_with_injected_clock() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # a success resets the consecutive count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now = 9.99
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the single trial
    assert not breaker.allow()  # others wait for it
    breaker.record_failure()  # trial failed: open for another cool-down
    assert breaker.state is BreakerState.OPEN
    clock.now = 19.0
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()
    with pytest.raises(ValueError, match="failure_threshold must be >= 1"):
        CircuitBreaker(failure_threshold=0)


def test_batch_rejects_misaligned_columns() -> None:
    with pytest.raises(PipelineError, match="column 'x' has 1 values for 2 items"):
        Batch(RankRequest("u", 1), ("a", "b"), {"x": np.zeros(1)})

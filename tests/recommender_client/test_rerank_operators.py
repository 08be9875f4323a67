"""Every rerank operator against hand-computed orders, scores and rule notes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender_client.pipeline import Batch, RankRequest
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.rerank.operators import (
    BoostFreshness,
    CapFrequency,
    CapPerCategory,
    FilterBlacklisted,
    FilterSeen,
    FilterUnpublished,
    InsertExploration,
    ScaleScores,
)
from recommender_client.rerank.pins import Pin, PinItems
from recommender_client.stages import OrderByScore, TruncateToK
from tests.recommender_client.conftest import T

HOUR = 3600.0


def make_batch(
    items, *, scores=None, cats=None, tags=None, publish=None, k=10, user="u1", now=T, rng=None
) -> Batch:
    n = len(items)
    scores = [1.0 - 0.1 * i for i in range(n)] if scores is None else scores
    columns = {
        "rank_score": np.array(scores, dtype=np.float64),
        "model_score": np.array(scores, dtype=np.float32),
        "category": np.array(cats or ["x"] * n, dtype=object),
        "tags": np.array(tags or [""] * n, dtype=object),
        "publish_time": np.array(publish or [T - 100 * HOUR] * n, dtype=np.float64),
        "recall_source": np.array(["popularity"] * n, dtype=object),
        "pre_rerank_position": np.arange(n, dtype=np.int64),
    }
    return Batch(RankRequest(user_id=user, k=k, now=now, rng=rng), tuple(items), columns)


def notes(batch: Batch) -> dict[str, tuple[str, ...]]:
    return {item: r for item, r in zip(batch.items, batch.rules, strict=True) if r}


def test_filter_blacklisted_items_and_categories() -> None:
    batch = make_batch(["a1", "a2", "a3", "a4"], cats=["x", "y", "x", "z"])
    out = FilterBlacklisted("ban", items=["a4"], categories=["x"])(batch)
    assert out.items == ("a2",)
    assert out.values["removed"] == {"a1", "a3", "a4"}
    assert out.columns["category"].tolist() == ["y"]


def test_filter_seen_within_ttl() -> None:
    seen = {"u1": (["a1", "a2"], np.array([T - 100, T - 5000]))}
    op = FilterSeen("seen", ttl_s=1000, seen=lambda user: seen.get(user, ([], np.zeros(0))))
    assert op(make_batch(["a1", "a2", "a3"])).items == ("a2", "a3")
    assert op(make_batch(["a1", "a2", "a3"], user="u9")).items == ("a1", "a2", "a3")


def test_filter_unpublished_keeps_unknown_publish_times() -> None:
    out = FilterUnpublished("live")(make_batch(["a1", "a2", "a3"], publish=[T - 1, T + 1, math.nan]))
    assert out.items == ("a1", "a3")


def test_frequency_cap_counts_exposures_in_period() -> None:
    log = InMemoryExposureLog()
    log.record("u1", ["a1"], T - 10)
    log.record("u1", ["a1", "a2"], T - 20)
    log.record("u1", ["a2"], T - 5000)
    log.record("u2", ["a3", "a3"], T - 1)
    op = CapFrequency("cap", exposures=log, max_impressions=2, period_s=1000)
    assert op(make_batch(["a1", "a2", "a3"])).items == ("a2", "a3")  # a1 twice in 1000 s; a2 once
    assert op(make_batch(["a1", "a2", "a3"], user="u2")).items == ("a1", "a2")
    assert log.count("u1", ["a1", "a2", "zz"], since=T - 6000, until=T).tolist() == [2, 2, 0]


def test_exposure_log_is_bounded() -> None:
    log = InMemoryExposureLog(max_users=2, max_events_per_user=2)
    log.record("u1", ["a", "b", "c"], 1.0)  # keeps the newest two: b, c
    log.record("u2", ["a"], 1.0)
    log.record("u3", ["a"], 1.0)  # forgets u1, the least recently served
    assert log.count("u1", ["a", "b", "c"], since=0, until=2).tolist() == [0, 0, 0]
    assert log.count("u3", ["a"], since=0, until=2).tolist() == [1]


def test_boost_and_bury_by_category_tag_and_item() -> None:
    batch = make_batch(
        ["a1", "a2", "a3"], scores=[1.0, 0.9, 0.8], cats=["x", "y", "z"], tags=["t1", "t2|t9", "t3"]
    )
    out = ScaleScores("boost", multiplier=1.5, categories=["z"], tags=["t9"])(batch)
    np.testing.assert_allclose(out.columns["rank_score"], [1.0, 1.35, 1.2])
    out = OrderByScore()(out)
    assert out.items == ("a2", "a3", "a1")
    assert notes(out) == {"a2": ("boost",), "a3": ("boost",)}
    np.testing.assert_allclose(
        out.columns["model_score"], [0.9, 0.8, 1.0], rtol=1e-6
    )  # model scores untouched
    buried = OrderByScore()(ScaleScores("bury", multiplier=0.5, items=["a1"])(batch))
    assert buried.items == ("a2", "a3", "a1")
    np.testing.assert_allclose(buried.columns["rank_score"], [0.9, 0.8, 0.5])


def test_freshness_boost_decays_with_age() -> None:
    publish = [T - 24 * HOUR, T - 48 * HOUR, T + HOUR, math.nan, T - 2400 * HOUR]
    out = BoostFreshness("fresh", max_boost=1.0, half_life_hours=24)(
        make_batch(list("abcde"), scores=[1.0] * 5, publish=publish)
    )
    np.testing.assert_allclose(out.columns["rank_score"], [1.5, 1.25, 2.0, 1.0, 1.0 + 0.5**100])
    assert notes(out) == {"a": ("fresh",), "b": ("fresh",), "c": ("fresh",)}  # e: below MIN_NOTED_BOOST


def test_cap_per_category_window() -> None:
    out = CapPerCategory("div", max_per_window=1, window=2)(
        make_batch(["a1", "a2", "a3", "a4", "a5"], cats=["x", "x", "y", "x", "y"])
    )
    assert out.items == ("a1", "a3", "a2", "a5", "a4")
    assert notes(out) == {"a2": ("div",), "a4": ("div",)}
    assert out.columns["pre_rerank_position"].tolist() == [0, 2, 1, 4, 3]
    out = CapPerCategory("div", max_per_window=2, window=3)(
        make_batch(["a1", "a2", "a3", "a4"], cats=["x", "x", "x", "y"])
    )
    assert out.items == ("a1", "a2", "a4", "a3")
    # unsatisfiable: nothing better to take, order kept, nobody noted
    out = CapPerCategory("div", max_per_window=1, window=2)(make_batch(["a1", "a2", "a3"]))
    assert out.items == ("a1", "a2", "a3") and notes(out) == {}
    with pytest.raises(ValueError, match="rule 'div': need 1 <= max_per_window < window"):
        CapPerCategory("div", max_per_window=3, window=3)


def _greedy_diversity(cats: list[str], limit: int, window: int) -> list[int]:
    """The rule's definition, recomputed naively: each position takes the first remaining item
    whose category has fewer than ``limit`` items in the previous ``window - 1`` positions."""
    remaining, order = list(range(len(cats))), []
    while remaining:
        recent = [cats[i] for i in order[-(window - 1) :]]
        fits = [i for i in remaining if recent.count(cats[i]) < limit]
        pick = fits[0] if fits else remaining[0]
        remaining.remove(pick)
        order.append(pick)
    return order


def test_cap_per_category_arranges_the_top_k_like_the_full_greedy_and_keeps_the_rest() -> None:
    rng = np.random.default_rng(7)
    cats = [str(c) for c in rng.choice(["x", "y", "z"], size=60, p=[0.7, 0.2, 0.1])]
    items = [f"i{j}" for j in range(60)]
    out = CapPerCategory("div", max_per_window=2, window=5)(make_batch(items, cats=cats, k=12))
    expected = _greedy_diversity(cats, 2, 5)[:12]
    assert list(out.items[:12]) == [items[j] for j in expected]
    rest = [items[j] for j in range(60) if j not in set(expected)]
    assert list(out.items[12:]) == rest  # untouched order beyond what the response shows
    top = [cats[j] for j in expected]
    assert all(top[i : i + 5].count(c) <= 2 for i in range(8) for c in "xyz")


def test_exploration_fills_slots_from_beyond_k_reproducibly() -> None:
    items = [f"a{i}" for i in range(10)]
    op = InsertExploration("explore", slots=[3, 1])
    out = op(make_batch(items, k=5, rng=np.random.default_rng(42)))
    picks = (np.arange(5, 10)[np.random.default_rng(42).choice(5, size=2, replace=False)]).tolist()
    chosen = [f"a{p}" for p in picks]
    assert out.items[1] == chosen[0] and out.items[3] == chosen[1]
    rest = [i for i in out.items if i not in chosen]
    assert rest == [i for i in items if i not in chosen]  # everything else keeps its order
    assert notes(out) == {chosen[0]: ("explore",), chosen[1]: ("explore",)}
    again = op(make_batch(items, k=5, rng=np.random.default_rng(42)))
    assert again.items == out.items
    # no pool beyond k: nothing to explore
    assert op(make_batch(items[:5], k=5, rng=np.random.default_rng(1))).items == tuple(items[:5])


def test_pins_place_move_and_insert(artifacts: RecallArtifacts) -> None:
    pins = [
        Pin("pin-a4", "a4", 0),
        Pin("pin-i6", "i6", 2, start=T - 10, end=T + 10),
        Pin("pin-a5-later", "a5", 1, start=T + 100),
    ]
    out = PinItems(pins, catalog=artifacts.catalog)(make_batch(["a1", "a2", "a3", "a4", "a5"]))
    assert out.items == ("a4", "a1", "i6", "a2", "a3", "a5")
    assert notes(out) == {"a4": ("pin-a4",), "i6": ("pin-i6",)}
    assert out.columns["category"][2] == "c" and out.columns["recall_source"][2] == "pin"
    assert math.isnan(out.columns["model_score"][2]) and out.columns["pre_rerank_position"][2] == -1
    # outside the window the i6 pin is inactive; the a5 pin is active after its start
    later = PinItems(pins, catalog=artifacts.catalog)(make_batch(["a1", "a2", "a3", "a4", "a5"], now=T + 200))
    assert later.items == ("a4", "a5", "a1", "a2", "a3")


def test_pin_never_resurrects_a_filtered_item(artifacts: RecallArtifacts) -> None:
    batch = FilterBlacklisted("ban", items=["i6"])(make_batch(["a1", "i6"]))
    out = PinItems([Pin("pin", "i6", 0)], catalog=artifacts.catalog)(batch)
    assert out.items == ("a1",)
    with pytest.raises(
        ValueError, match=r"pins .p1. and .p2.: both pin position 0 in overlapping time windows"
    ):
        PinItems([Pin("p1", "a", 0), Pin("p2", "b", 0)], catalog=artifacts.catalog)


def test_truncate_to_k() -> None:
    assert TruncateToK()(make_batch(["a1", "a2", "a3"], k=2)).items == ("a1", "a2")
    assert TruncateToK()(make_batch(["a1"], k=2)).items == ("a1",)

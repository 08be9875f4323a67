"""Prior user/item statistics: strictly earlier events only (no leakage), by hand and brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.data.test_movielens import write_grouplens
from training.data.base import DataError
from training.data.movielens import load_movielens
from training.data.prior_stats import PRIOR_STAT_COLUMNS, add_prior_stats, prior_sums
from training.features import Entity, FeatureKind


def _frame() -> pd.DataFrame:
    # out of time order on purpose; u1 has two events at t=20 (a tie: neither sees the other)
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u1", "u1", "u2"],
            "item_id": ["a", "a", "b", "c", "a", "b"],
            "timestamp": [20, 5, 10, 20, 30, 20],
            "label": [1, 0, 1, 0, 1, 1],
            "rating": [5.0, 2.0, 4.0, 1.0, 5.0, 4.0],
        }
    )


def test_prior_sums_see_only_strictly_earlier_rows_of_the_same_key() -> None:
    f = _frame()
    count, total = prior_sums(f["user_id"].to_numpy(), f["timestamp"].to_numpy(), f["label"].to_numpy())
    # u1 by time: b@10 (1), {a, c}@20 (1, 0), a@30 (1); u2: a@5 (0), b@20 (1)
    assert count.tolist() == [1, 0, 0, 1, 3, 1]
    assert total.tolist() == [1, 0, 0, 1, 2, 0]


def test_like_rates_and_counts_by_hand() -> None:
    out = add_prior_stats(_frame(), smoothing=2.0, rating="rating")
    # global prior per row (all strictly earlier events): t=5 -> none (0.5); t=10 -> {0} = 0;
    # t=20 -> {0, 1} = 0.5; t=30 -> {0, 1, 1, 0, 1} = 0.6
    # row 0 (u1 @20): u1 saw b@10 liked: (1 + 2 * 0.5) / (1 + 2) = 2/3
    # row 4 (u1 @30): u1 saw 3 events, 2 liked: (2 + 2 * 0.6) / (3 + 2) = 0.64
    # row 2 (u1 @10): nothing of u1 yet: the prior, 0
    np.testing.assert_allclose(out["user_prior_like_rate"], [2 / 3, 0.5, 0.0, 2 / 3, 0.64, 1 / 3], rtol=1e-6)
    # item a: u2@5 (0), u1@20 (1), u1@30; row 4 sees two a-events, one liked
    assert out["item_prior_count"].tolist() == [1, 0, 0, 0, 2, 1]
    np.testing.assert_allclose(out["item_prior_like_rate"].iloc[4], (1 + 2 * 0.6) / (2 + 2), rtol=1e-6)
    # ratings: the prior before anything is the midrange 3; row 4's earlier global mean is
    # (2 + 4 + 5 + 1 + 4) / 5 = 3.2 and u1 rated 4, 5, 1 before it
    np.testing.assert_allclose(out["user_prior_rating"].iloc[4], (10 + 2 * 3.2) / 5, rtol=1e-6)
    np.testing.assert_allclose(out["user_prior_rating"].iloc[2], (0 + 2 * 2.0) / 2, rtol=1e-6)
    assert out["user_prior_rating"].iloc[1] == 3.0


def test_missing_columns_and_bad_smoothing_are_refused() -> None:
    with pytest.raises(DataError, match=r"missing columns \['stars'\]"):
        add_prior_stats(_frame(), rating="stars")
    with pytest.raises(DataError, match="smoothing must be > 0"):
        add_prior_stats(_frame(), smoothing=0.0)


def _brute_force(frame: pd.DataFrame, key: str, smoothing: float) -> np.ndarray:
    """Per row, an independent route: filter the earlier rows, average them."""
    out = []
    for _, row in frame.iterrows():
        earlier = frame[frame["timestamp"] < row["timestamp"]]
        prior = earlier["label"].mean() if len(earlier) else 0.5
        mine = earlier[earlier[key] == row[key]]["label"]
        out.append((mine.sum() + smoothing * prior) / (len(mine) + smoothing))
    return np.array(out)


def test_values_match_a_brute_force_on_random_events() -> None:
    rng = np.random.default_rng(3)
    n = 120
    frame = pd.DataFrame(
        {
            "user_id": rng.choice(["u1", "u2", "u3"], n),
            "item_id": rng.choice(["a", "b", "c", "d"], n),
            "timestamp": rng.integers(0, 40, n),  # many ties
            "label": rng.integers(0, 2, n),
        }
    )
    out = add_prior_stats(frame, smoothing=3.0)
    for prefix, key in (("user", "user_id"), ("item", "item_id")):
        np.testing.assert_allclose(out[f"{prefix}_prior_like_rate"], _brute_force(frame, key, 3.0), rtol=1e-5)
    # a row's own label never moves its features: flip every label at the latest time
    last = frame["timestamp"] == frame["timestamp"].max()
    flipped = add_prior_stats(
        frame.assign(label=np.where(last, 1 - frame["label"], frame["label"])), smoothing=3.0
    )
    pd.testing.assert_frame_equal(out[last].drop(columns="label"), flipped[last].drop(columns="label"))


def test_movielens_prior_stats_are_opt_in_entity_features(tmp_path: Path) -> None:
    root = write_grouplens(tmp_path / "gl")
    plain = load_movielens(root, split="global", cold_start_rows=0)
    assert not set(PRIOR_STAT_COLUMNS) & set(plain.contract.names)
    splits = load_movielens(root, split="global", cold_start_rows=0, prior_stats=True)
    for name, entity in PRIOR_STAT_COLUMNS.items():
        feature = splits.contract[name]
        assert (feature.kind, feature.entity) == (FeatureKind.NUMERIC, entity)
        assert feature.transform == ("log1p" if name.endswith("_count") else "none")
    assert splits.contract["user_prior_count"].entity is Entity.USER
    rows = pd.concat([splits.train, splits.valid, splits.test])
    # user 1 by time: 11 (2) @10, 10 (5) @30, 12 (3) @60, 13 (4) @80: the row @80 saw 3 ratings, 1 liked
    row = rows[rows["timestamp"] == 1_000_080].iloc[0]
    assert row["user_prior_count"] == 3
    earlier = rows[rows["timestamp"] < 1_000_080]
    prior = earlier["label"].mean()
    assert row["user_prior_like_rate"] == pytest.approx((1 + 10 * prior) / (3 + 10), rel=1e-6)
    np.testing.assert_allclose(rows["item_prior_like_rate"], _brute_force(rows, "item_id", 10.0), rtol=1e-5)

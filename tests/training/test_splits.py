"""Splits: per-user holds out each user's last events, random is seeded and disjoint, vocab from train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from training.data import DataError
from training.data.contracts import FeatureRecipe
from training.data.splits import (
    SplitSpec,
    apply_split,
    build_splits,
    cold_shares,
    per_user_counts,
    per_user_split,
    random_split,
    split_note,
    split_summary,
)


def _events() -> pd.DataFrame:
    """Three users; u1's two events at t=5 are a tie (file order decides: e3 before e4)."""
    rows = [
        ("e0", "u1", 1), ("e1", "u2", 2), ("e2", "u1", 3), ("e3", "u1", 5), ("e4", "u1", 5),
        ("e5", "u2", 1), ("e6", "u3", 9), ("e7", "u1", 4), ("e8", "u2", 7), ("e9", "u2", 8),
        ("e10", "u1", 6),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["event", "user_id", "timestamp"])


def test_per_user_last_n_by_hand() -> None:
    spec = SplitSpec(kind="per-user", test_last_n=1, valid_last_n=1)
    train, valid, test = per_user_split(_events(), spec)
    # u1 by time: e0(1) e2(3) e7(4) e3(5) e4(5) e10(6) -> test e10, valid e4 (the later of the tie)
    # u2 by time: e5(1) e1(2) e8(7) e9(8) -> test e9, valid e8; u3 has one event: train only
    assert test["event"].tolist() == ["e9", "e10"]
    assert valid["event"].tolist() == ["e4", "e8"]
    assert train["event"].tolist() == ["e0", "e1", "e2", "e3", "e5", "e6", "e7"]


def test_per_user_fractions_by_hand() -> None:
    spec = SplitSpec(kind="per-user")  # valid 10%, test 20%
    assert per_user_counts(20, spec) == (2, 4)
    assert per_user_counts(29, spec) == (2, 5)
    assert per_user_counts(3, spec) == (1, 1)
    assert per_user_counts(2, spec) == (0, 1)
    assert per_user_counts(1, spec) == (0, 0)
    frame = pd.DataFrame({"user_id": ["a"] * 10 + ["b"] * 5, "timestamp": list(range(10)) + list(range(5))})
    train, valid, test = per_user_split(frame, spec)
    # a: 10 events -> test 2 (t 8, 9), valid 1 (t 7); b: 5 -> test 1 (t 4), valid 1 (t 3)
    assert sorted(zip(test["user_id"], test["timestamp"], strict=True)) == [("a", 8), ("a", 9), ("b", 4)]
    assert sorted(zip(valid["user_id"], valid["timestamp"], strict=True)) == [("a", 7), ("b", 3)]
    assert len(train) == 10


def test_random_split_is_seeded_and_disjoint() -> None:
    frame = pd.DataFrame({"row": np.arange(100), "timestamp": np.zeros(100)})
    parts = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(3))
    again = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(3))
    other = random_split(frame, (0.8, 0.1, 0.1), np.random.default_rng(4))
    assert [len(p) for p in parts] == [80, 10, 10]
    rows = [set(p["row"]) for p in parts]
    assert rows[0].isdisjoint(rows[1]) and rows[0].isdisjoint(rows[2]) and rows[1].isdisjoint(rows[2])
    assert set().union(*rows) == set(range(100))
    assert all(a["row"].tolist() == b["row"].tolist() for a, b in zip(parts, again, strict=True))
    assert parts[2]["row"].tolist() != other[2]["row"].tolist()
    # the same cut as taking the permutation's first 80 / next 10 / last 10
    order = np.random.default_rng(3).permutation(100)
    assert parts[2]["row"].tolist() == sorted(order[90:])


def test_global_split_through_apply_split() -> None:
    train, valid, test = apply_split(_events(), SplitSpec(kind="global", valid=0.2, test=0.2))
    assert train["timestamp"].max() < valid["timestamp"].min()
    assert valid["timestamp"].max() < test["timestamp"].min()


def test_vocabulary_and_statistics_come_from_train_only() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "a", "b", "b", "b", "b"],
            "item_id": ["x", "x", "y", "late", "x", "y", "valid_only", "late2"],
            "price": [1.0, 3.0, 2.0, 1000.0, 2.0, 2.0, 4.0, 500.0],
            "timestamp": [1, 2, 3, 4, 1, 2, 3, 4],
            "label": [0, 1, 0, 1, 1, 0, 1, 0],
        }
    )
    recipes = [
        FeatureRecipe("item_id", "categorical", "item"),
        FeatureRecipe("price", "numeric", "item"),
    ]
    spec = SplitSpec(kind="per-user", test_last_n=1, valid_last_n=1)
    splits = build_splits("t", frame, recipes, spec, source="t")
    assert set(splits.test["item_id"]) == {"late", "late2"}
    assert set(splits.valid["item_id"]) == {"y", "valid_only"}
    # train rows: a (x 1.0, x 3.0), b (x 2.0, y 2.0) -> x 3, y 1; held-out items are not in it
    assert splits.contract["item_id"].vocabulary == ("x", "y")
    assert splits.contract["price"].mean == pytest.approx(2.0)
    assert splits.contract["price"].std == pytest.approx(np.std([1.0, 3.0, 2.0, 2.0]))
    assert "per-user" in splits.split


def test_cold_shares_by_hand() -> None:
    train = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    test = pd.DataFrame({"user_id": ["a", "c", "c", "b"], "item_id": ["z", "x", "z", "y"]})
    shares = cold_shares(train, test)
    assert shares == {"test_rows": 4, "cold_user_share": 0.5, "cold_item_share": 0.5, "cold_any_share": 0.75}


def test_split_spec_rejects_bad_combinations() -> None:
    with pytest.raises(ValidationError, match="per-user split only"):
        SplitSpec(kind="global", test_last_n=2)
    with pytest.raises(ValidationError, match="not both"):
        SplitSpec(kind="per-user", test=0.2, test_last_n=2)
    with pytest.raises(ValidationError, match="in \\(0, 1\\)"):
        SplitSpec(kind="random", valid=0.5, test=0.5)
    with pytest.raises(DataError, match="left a part empty"):
        per_user_split(
            pd.DataFrame({"user_id": list("abc"), "timestamp": [1, 2, 3]}), SplitSpec(kind="per-user")
        )


def test_report_note_states_split_and_cold_shares() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "c"],
            "item_id": list("xyzxyw"),
            "timestamp": [1, 2, 3, 1, 2, 5],
        }
    )
    recipes = [FeatureRecipe("item_id", "categorical", "item")]
    splits = build_splits("t", frame, recipes, SplitSpec(kind="global", valid=0.2, test=0.2), source="t")
    # time order: a1 b1 a2 b2 a3 c5 -> train a1 b1 a2 b2, valid a3, test c5 (new user c, new item w)
    data = {"split": "test"} | split_summary(splits, splits.test)
    assert split_note(data) == (
        " (global time split (latest 20% of events to test, the 20% before to validation); "
        "100.0% of rows with a new user; 100.0% of rows with a new item)"
    )
    assert split_note({"split": "test"}) == ""

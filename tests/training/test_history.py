"""Behaviour histories from strictly earlier events only (no leakage), most recent first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.data.test_movielens import write_grouplens
from training.data.base import DataError
from training.data.history import add_history
from training.data.movielens import load_movielens
from training.data.pipeline import make_tf_dataset
from training.data.synthetic import load_synthetic, write_synthetic
from training.data.synthetic_world import SyntheticConfig
from training.features import FeatureKind
from training.models import ModelConfig, build_model


def _frame() -> pd.DataFrame:
    # rows out of time order on purpose; u1 has two events at t=20 (ties)
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u1", "u1", "u2", "u1"],
            "item_id": ["c", "x", "a", "b", "d", "y", "e"],
            "timestamp": [20, 5, 10, 20, 30, 6, 40],
            "label": [1, 1, 1, 0, 1, 1, 1],
        }
    )


def test_history_is_strictly_earlier_most_recent_first_and_truncated() -> None:
    out = add_history(_frame(), max_len=2)
    assert list(out.columns) == [*_frame().columns, "history"]
    # u1 by time: a@10, {c, b}@20, d@30, e@40 (ties in row order: c before b); a@10 has none
    assert out["history"].tolist() == ["a", "", "", "a", "b|c", "x", "d|b"]


def test_only_positive_events_become_history() -> None:
    out = add_history(_frame(), max_len=3, only_positive="label")
    # b (label 0) never appears; the row itself is never in its own history
    assert out["history"].tolist() == ["a", "", "", "a", "c|a", "x", "d|c|a"]


def test_bad_options_are_refused() -> None:
    with pytest.raises(DataError, match="max_len must be >= 1"):
        add_history(_frame(), max_len=0)
    with pytest.raises(DataError, match=r"missing columns \['when'\]"):
        add_history(_frame(), max_len=2, timestamp="when")


def _brute_force(frame: pd.DataFrame, max_len: int) -> list[str]:
    """Per row, an independent route: filter the user's earlier liked rows, newest first."""
    out = []
    for _, row in frame.iterrows():
        earlier = frame[(frame["user_id"] == row["user_id"]) & (frame["timestamp"] < row["timestamp"])]
        earlier = earlier[earlier["label"] == 1].sort_values("timestamp", kind="stable")
        out.append("|".join(earlier["item_id"].astype(str).tolist()[::-1][:max_len]))
    return out


def test_movielens_history_is_opt_in_and_strictly_earlier(tmp_path: Path) -> None:
    root = write_grouplens(tmp_path / "gl")
    plain = load_movielens(root, split="global", cold_start_rows=0)
    assert "history" not in plain.contract.names and "history" not in plain.train.columns
    splits = load_movielens(root, split="global", cold_start_rows=0, history_len=2)
    history = splits.contract["history"]
    item = splits.contract["item_id"]
    assert (history.kind, history.item_feature, history.max_len) == (FeatureKind.SEQUENCE, "item_id", 2)
    assert history.vocabulary == item.vocabulary
    assert splits.contract.names[:-1] == plain.contract.names
    rows = pd.concat([splits.train, splits.valid, splits.test])
    assert rows["history"].tolist() == _brute_force(rows, 2)
    # user 1 by time: 11 (2), 10 (5), 12 (3), 13 (4): the row rated at 1_000_080 saw only the liked 10
    assert rows.loc[rows["timestamp"] == 1_000_080, "history"].tolist() == ["10"]


def test_synthetic_history_trains_din_through_the_data_pipeline(tmp_path: Path) -> None:
    config = SyntheticConfig(num_rows=600, seed=3, num_users=20, num_items=30, num_categories=3)
    root = write_synthetic(tmp_path / "syn", config)
    splits = load_synthetic(root, history_len=4)
    assert splits.contract["history"].item_feature == "item_id"
    assert splits.train["history"].tolist() == _brute_force(splits.train, 4)
    assert (splits.train["history"] != "").mean() > 0.5
    model = build_model("din", splits.contract, config=ModelConfig(hidden_units=(8,)), seed=0)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(
        make_tf_dataset(splits.train, splits.contract, 128, shuffle_seed=0), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])

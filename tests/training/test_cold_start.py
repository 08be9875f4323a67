"""Cold start learns: training rows that map an id to OOV (cold-start copies, min_count) train its row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import TrainConfig
from training.data import DataError
from training.data.cold_start import with_cold_start_rows
from training.data.contracts import FeatureRecipe
from training.data.splits import SplitSpec, build_splits
from training.features import FeatureContract


def test_cold_start_rows_by_hand() -> None:
    train = pd.DataFrame(
        {
            "user_id": ["a", "b", "a", "a", "b", "c"],
            "item_id": ["x", "x", "y", "x", "z", "x"],
            "price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "timestamp": [5, 1, 2, 9, 3, 7],
        }
    )
    out = with_cold_start_rows(train, ("user_id", "item_id"), 2)
    pd.testing.assert_frame_equal(out.iloc[:6], train)
    copies = out.iloc[6:]
    # by time: b1 a2 b3 a5 c7 a9 -> users' first two: b1 a2 b3 a5 c7; items': x(b1) y(a2) z(b3) x(a5)
    assert list(zip(copies["user_id"], copies["item_id"], copies["timestamp"], strict=True)) == [
        ("", "x", 1), ("", "y", 2), ("", "z", 3), ("", "x", 5), ("", "x", 7),
        ("b", "", 1), ("a", "", 2), ("b", "", 3), ("a", "", 5),
    ]  # fmt: skip
    assert copies["price"].tolist() == [2.0, 3.0, 5.0, 1.0, 6.0, 2.0, 3.0, 5.0, 1.0]
    assert with_cold_start_rows(train, ("user_id",), 0) is train
    with pytest.raises(DataError, match="must hold strings"):
        with_cold_start_rows(train.assign(user_id=[1, 2, 1, 1, 2, 3]), ("user_id",), 1)


def _splits(min_count: int, cold_start_rows: int = 0):
    rng = np.random.default_rng(5)
    n = 400
    # items 0..19 are frequent, 20..59 appear once each: only those go to OOV with min_count 2
    items = np.concatenate([rng.integers(0, 20, n - 40), np.arange(20, 60)])
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 10, n)],
            "item_id": [f"i{i}" for i in items],
            "timestamp": rng.permutation(n),
            "label": (rng.random(n) < 0.3 + 0.4 * (items >= 20)).astype(np.int64),
        }
    )
    recipes = [
        FeatureRecipe("user_id", "categorical", "user", min_count=1),
        FeatureRecipe("item_id", "categorical", "item", min_count=min_count),
    ]
    split = SplitSpec(kind="random", seed=1)
    return build_splits(
        "t",
        frame,
        recipes,
        split,
        source="t",
        id_columns=("user_id", "item_id"),
        cold_start_rows=cold_start_rows,
    )


def _oov_row(model, contract: FeatureContract) -> np.ndarray:
    """Row 0 of the item_id embedding (ids [0, num_oov) are the OOV buckets)."""
    assert contract["item_id"].num_oov == 1
    rows = [
        v.numpy()
        for v in model.weights
        if "item_id" in v.path
        and v.path.endswith("embeddings")
        and v.shape[0] == contract["item_id"].num_buckets
    ]
    assert rows, [v.path for v in model.weights]
    return np.concatenate([r[0] for r in rows])  # FM: the linear weight and the factor


@pytest.mark.parametrize(("min_count", "copies", "trained"), [(1, 0, False), (2, 0, True), (1, 1, True)])
def test_oov_row_moves_only_when_training_rows_map_to_it(
    tmp_path: Path, min_count: int, copies: int, trained: bool
) -> None:
    pytest.importorskip("tensorflow")
    from training.layers import load_keras_model
    from training.models import ModelConfig, build_model
    from training.train import train

    splits = _splits(min_count, copies)
    vocabulary = splits.contract["item_id"].vocabulary
    oov_in_train = int((~splits.train["item_id"].isin(vocabulary)).sum())
    assert (oov_in_train > 0) is trained  # min_count 1, no copies: every training value has its own row
    config = TrainConfig(
        out_dir=str(tmp_path / "run"),
        model="fm",
        model_config={"l2": 0.0},  # no weight decay: a row changes only through its own gradient
        epochs=1,
        batch_size=32,
        learning_rate=0.05,
        verbose=0,
    )
    initial = build_model("fm", splits.contract, config=ModelConfig.from_dict({"l2": 0.0}), seed=config.seed)
    again = build_model("fm", splits.contract, config=ModelConfig.from_dict({"l2": 0.0}), seed=config.seed)
    np.testing.assert_array_equal(_oov_row(initial, splits.contract), _oov_row(again, splits.contract))
    train(config, splits=splits)
    after = _oov_row(load_keras_model(Path(config.out_dir) / "model.keras"), splits.contract)
    moved = float(np.abs(after - _oov_row(initial, splits.contract)).max())
    if trained:
        assert moved > 1e-3
    else:
        assert moved == 0.0

"""Cold start learns: with min_count 2 the OOV row of an id feature receives gradient in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")

from training.config import TrainConfig  # noqa: E402
from training.data.contracts import FeatureRecipe  # noqa: E402
from training.data.splits import SplitSpec, build_splits  # noqa: E402
from training.features import FeatureContract  # noqa: E402


def _splits(min_count: int):
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
    return build_splits("t", frame, recipes, SplitSpec(kind="random", seed=1), source="t")


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


@pytest.mark.parametrize(("min_count", "trained"), [(1, False), (2, True)])
def test_oov_row_moves_only_when_train_has_rare_values(tmp_path: Path, min_count: int, trained: bool) -> None:
    from training.layers import load_keras_model
    from training.models import ModelConfig, build_model
    from training.train import train

    splits = _splits(min_count)
    vocabulary = splits.contract["item_id"].vocabulary
    rare_in_train = int((~splits.train["item_id"].isin(vocabulary)).sum())
    assert (rare_in_train > 0) is trained  # min_count 1: every training value has its own row
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

"""MovieLens with prior statistics and a history: trains, exports, and the ranker fills every input.

The statistics are user and item features, so the recall artefacts built from the training log
store each entity's newest value and the ranker's feature join serves them; this checks that
chain end to end on a tiny catalogue, against the values training computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recommender_client.features import FeatureJoiner, InMemoryFeatureStore
from recommender_client.recall.build import build_artifacts
from tests.training.data.test_movielens import write_grouplens
from training.config import TrainConfig
from training.data.movielens import load_movielens
from training.data.prior_stats import PRIOR_STAT_COLUMNS
from training.features import Entity, FeatureContract
from training.layers import load_keras_model
from training.train import predict_frame, train


def test_trains_exports_and_the_ranker_serves_the_statistics(tmp_path: Path) -> None:
    from export.saved_model import export_saved_model

    splits = load_movielens(write_grouplens(tmp_path / "gl"), prior_stats=True, history_len=3)
    config = TrainConfig(out_dir=str(tmp_path / "run"), data="movielens", model="deepfm", epochs=1, verbose=0)
    train(config, splits=splits)
    model = load_keras_model(tmp_path / "run" / "model.keras")
    path = export_saved_model(model, splits.contract, tmp_path / "models", "ml", 1)

    events = {name: splits.train[name].to_numpy() for name in splits.train.columns}
    # without the cold-start copies (an id blanked), as recall builds from the log
    real = (splits.train["user_id"] != "") & (splits.train["item_id"] != "")
    events = {name: values[real.to_numpy()] for name, values in events.items()}
    artifacts = build_artifacts(events, contract=splits.contract)
    joiner = FeatureJoiner(splits.contract, InMemoryFeatureStore.from_artifacts(artifacts))
    train_rows = splits.train[real].sort_values("timestamp", kind="stable")
    items = sorted(set(train_rows["item_id"]))[:2]
    inputs, known, _ = joiner.join("1", items, {}, now=1_000_100.0)
    assert known and len(items) == 2
    # each user's and item's newest training event carries what the store serves
    newest_user = train_rows[train_rows["user_id"] == "1"].iloc[-1]
    for name, entity in PRIOR_STAT_COLUMNS.items():
        if entity is Entity.USER:
            np.testing.assert_allclose(inputs[name], [newest_user[name]] * 2, rtol=1e-6)
        else:
            for row, item in enumerate(items):
                newest = train_rows[train_rows["item_id"] == item].iloc[-1]
                np.testing.assert_allclose(inputs[name][row], newest[name], rtol=1e-6)

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    served = serve(**{k: tf.constant(v) for k, v in inputs.items()})["ctr"].numpy().reshape(-1)
    frame = pd.DataFrame({**inputs, "label": [0, 0]})
    np.testing.assert_allclose(served, predict_frame(model, frame, splits.contract, 8), rtol=1e-5)


def test_recsys_train_prior_stats_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    root = write_grouplens(tmp_path / "gl")
    common = ["--data-path", str(root), "--epochs", "1", "--quiet"]
    assert main(["--data", "movielens", *common, "--prior-stats", "--out", str(tmp_path / "r")]) == 0
    assert set(PRIOR_STAT_COLUMNS) <= set(FeatureContract.load(tmp_path / "r").names)
    assert main(["--data", "synthetic", "--rows", "500", "--prior-stats", "--out", str(tmp_path / "s")]) == 2
    assert "--prior-stats applies to movielens" in capsys.readouterr().err

"""Training loop: output directory contents, exact resume after an interruption, early stopping, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training.cli import main as train_main  # noqa: E402
from training.config import ConfigError, TrainConfig  # noqa: E402
from training.features import FeatureContract  # noqa: E402
from training.train import TrainingInterrupted, train  # noqa: E402

SMALL_MODEL = {"hidden_units": [16, 8], "embedding_dim": 4, "dropout": 0.1}


def _config(out: Path, **overrides) -> TrainConfig:
    values = {
        "out_dir": str(out),
        "model": "deepfm",
        "model_config": SMALL_MODEL,
        "epochs": 3,
        "batch_size": 256,
        "learning_rate": 3e-3,
        "seed": 3,
        "patience": 10,
        "verbose": 0,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def _weights(path: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


def test_interrupted_and_resumed_run_ends_with_the_same_weights(splits, tmp_path: Path) -> None:
    straight = train(_config(tmp_path / "straight"), splits=splits)
    assert straight.epochs_run == 3

    def interrupt(epoch: int, batch: int) -> None:
        if epoch == 2 and batch == 3:
            raise TrainingInterrupted("simulated crash in the middle of epoch 2")

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted):
        train(_config(resumed_dir), splits=splits, on_batch_end=interrupt)
    state = json.loads((resumed_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1  # only the completed epoch was checkpointed
    resumed = train(_config(resumed_dir), splits=splits)
    assert resumed.epochs_run == 3

    a = _weights(tmp_path / "straight" / "checkpoints" / "epoch-0003.keras")
    b = _weights(resumed_dir / "checkpoints" / "epoch-0003.keras")
    assert len(a) == len(b) > 0
    for wa, wb in zip(a, b, strict=True):  # bit-exact, as data/pipeline.py claims
        np.testing.assert_array_equal(wa, wb)
    # the two runs logged the same validation AUC per epoch
    assert [r["val_auc"] for r in straight.history] == [r["val_auc"] for r in resumed.history]


def test_output_directory_holds_model_contract_metrics_and_log(splits, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(_config(out, epochs=2, model="lr", model_config={}), splits=splits)
    assert FeatureContract.load(out) == splits.contract
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # the saved best model reproduces the logged best validation AUC
    from training.metrics import auc
    from training.train import predict_frame

    model = keras.saving.load_model(out / "model.keras")
    scores = predict_frame(model, splits.valid, splits.contract, 1024)
    assert auc(splits.valid["label"].to_numpy(), scores) == pytest.approx(result.best_val_auc, abs=1e-6)
    assert max(float(r["val_auc"]) for r in rows) == pytest.approx(result.best_val_auc, abs=1e-9)


def test_early_stopping_stops_after_patience(splits, tmp_path: Path) -> None:
    # a learning rate of ~0 cannot improve validation AUC by min_delta: with patience 1, epoch 2
    # is the one epoch without gain and training stops there (Keras' EarlyStopping count)
    result = train(
        _config(
            tmp_path / "es",
            model="lr",
            model_config={},
            epochs=6,
            patience=1,
            learning_rate=1e-12,
            min_delta=0.01,
        ),
        splits=splits,
    )
    assert result.stopped_early
    assert result.epochs_run == 2
    assert result.best_epoch == 1


def test_cli_rejects_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("epochs: 0\nout_dir: x\n")
    assert train_main(["--config", str(bad)]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown training config keys \\['epoch'\\]"):
        TrainConfig.from_dict({"out_dir": "x", "epoch": 3})


def test_rerun_in_a_new_process_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    """The CLI's documented resume works in a fresh process, where our custom layers are not
    registered until something imports them (a re-run of `make demo` used to fail here)."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "training.cli", "--data", "synthetic", "--rows", "2000"]
    args += ["--model", "lr", "--epochs", "1", "--seed", "0", "--quiet"]
    args += ["--out", str(tmp_path / "run")]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]

    def summary(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("best epoch")]

    assert summary(first.stdout) and summary(first.stdout) == summary(again.stdout)

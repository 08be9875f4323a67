"""Resume checked before anything is written, weights and state committed together, Keras' patience, monitor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from training import checkpoint as ckpt  # noqa: E402
from training.cli import main as train_main  # noqa: E402
from training.config import ConfigError, TrainConfig  # noqa: E402
from training.train import predict_frame, train  # noqa: E402


def _config(out: Path, **overrides) -> TrainConfig:
    """A small ``lr`` run (a few seconds an epoch); ``overrides`` replace any field."""
    fixed = dict(model="lr", epochs=3, batch_size=256, learning_rate=3e-3, seed=3, patience=10, verbose=0)
    return TrainConfig.from_dict({"out_dir": str(out), **fixed, **overrides})


def _final_weights(out: Path) -> list[np.ndarray]:
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    model = keras.saving.load_model(out / "checkpoints" / state["weights"])
    return [np.asarray(w) for w in model.get_weights()]


def test_crash_between_weights_and_state_resumes_from_the_committed_epoch(
    splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = train(_config(tmp_path / "straight"), splits=splits)

    out = tmp_path / "crashed"
    real_commit_state = ckpt.commit_state

    def crash_on_epoch_2(checkpoint_dir: Path, state: dict) -> None:
        if state["epoch"] == 2:
            raise KeyboardInterrupt("power cut after epoch 2's weights, before its state")
        real_commit_state(checkpoint_dir, state)

    monkeypatch.setattr(ckpt, "commit_state", crash_on_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(_config(out, epochs=2), splits=splits)
    monkeypatch.setattr(ckpt, "commit_state", real_commit_state)
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["epoch-0001.keras", "epoch-0002.keras", "state.json"]  # epoch 2 written, not committed
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == 1

    resumed = train(_config(out, epochs=2), splits=splits)  # retrains epoch 2 from epoch 1's weights
    assert resumed.epochs_run == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0002.keras", "state.json"]
    # raising --epochs continues the finished run; it ends where the straight 3-epoch run did
    continued = train(_config(out, epochs=3), splits=splits)
    assert continued.epochs_run == 3
    for a, b in zip(_final_weights(tmp_path / "straight"), _final_weights(out), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["val_auc"] for r in straight.history] == [r["val_auc"] for r in continued.history]


def test_failed_resume_writes_nothing_and_is_a_one_line_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    base = ["--data", "synthetic", "--rows", "1500", "--model", "lr", "--epochs", "1", "--quiet"]
    assert train_main([*base, "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    # other data and learning rate: refused before the data is loaded or any file is touched
    changed = ["--data", "synthetic", "--rows", "1600", "--model", "lr", "--learning-rate", "0.01"]
    assert train_main([*changed, "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("recsys-train: error: ")
    assert "data_options" in err and "learning_rate" in err and "epochs" not in err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    # verbose (no --quiet) and a larger --epochs are not training changes: the run continues
    assert train_main([*base[:-3], "--epochs", "2", "--out", str(out)]) == 0
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]


def test_check_resumable_ignores_only_the_free_fields(tmp_path: Path) -> None:
    saved = _config(tmp_path).to_dict()
    (tmp_path / "epoch-0001.keras").write_bytes(b"x")
    state = {"config": saved, "weights": "epoch-0001.keras"}
    free = saved | {"out_dir": "elsewhere", "verbose": 1, "epochs": 9, "eval_batch_size": 7}
    ckpt.check_resumable(tmp_path, state, free)
    for key, value in (("seed", 4), ("patience", 1), ("batch_size", 128), ("model_config", {"l2": 1.0})):
        with pytest.raises(ckpt.ResumeMismatch, match=f"\\({key} "):
            ckpt.check_resumable(tmp_path, state, saved | {key: value})
    with pytest.raises(ckpt.ResumeMismatch, match="names epoch-0002.keras, which is missing"):
        ckpt.check_resumable(tmp_path, {**state, "weights": "epoch-0002.keras"}, saved)


SEQUENCES = [
    [0.70, 0.71, 0.71, 0.71, 0.72, 0.70, 0.70, 0.70],
    [0.70, 0.69, 0.72, 0.72, 0.7205, 0.73, 0.73, 0.73, 0.73],
    [0.60, 0.60],
    [0.50, 0.51, 0.52, 0.53],
    [0.60, 0.59, 0.59, 0.595, 0.58, 0.58, 0.58],
    [0.5, 0.4995, 0.4990, 0.4985, 0.498],
]


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("patience", [0, 1, 2, 3])
@pytest.mark.parametrize("values", SEQUENCES)
def test_patience_stops_where_keras_early_stopping_does(
    values: list[float], patience: int, mode: str
) -> None:
    min_delta = 1e-3
    keras_stop = keras.callbacks.EarlyStopping(
        monitor="val_metric", mode=mode, patience=patience, min_delta=min_delta
    )
    keras_stop.set_model(keras.Sequential())
    keras_stop.model.stop_training = False
    keras_stop.on_train_begin()
    keras_epochs = len(values)
    for index, value in enumerate(values):
        keras_stop.on_epoch_end(index, {"val_metric": value})
        if keras_stop.model.stop_training:
            keras_epochs = index + 1
            break

    ours, our_epochs = ckpt.Patience.start(mode), len(values)
    for epoch, value in enumerate(values, start=1):
        ours = ours.update(epoch, value, min_delta=min_delta)
        if ours.should_stop(patience):
            our_epochs = epoch
            break
    assert our_epochs == keras_epochs


def test_patience_hand_counted() -> None:
    # 0.71 at epoch 2 is the best; epochs 3 and 4 gain less than min_delta: patience 2 stops at 4
    stop = ckpt.Patience.start("max")
    for epoch, value in enumerate([0.70, 0.71, 0.7105, 0.709], start=1):
        stop = stop.update(epoch, value, min_delta=1e-3)
    assert (stop.best_epoch, stop.waited, stop.should_stop(2), stop.should_stop(3)) == (2, 2, True, False)


# Monitor (TrainConfig.monitor). With learning rate 1e-2 the small ``lr`` run's validation logloss
# is lowest at epoch 2 and its AUC highest at epoch 1.
LOGLOSS_RUN = {"learning_rate": 1e-2}


def test_minimised_patience_hand_counted() -> None:
    # 0.58 at epoch 2 beats 0.60 by more than min_delta; 0.5795 (epoch 3) gains only 0.0005 and
    # 0.59 (epoch 4) is worse: two epochs waited, so patience 2 stops there and 3 does not
    stop = ckpt.Patience.start("min")
    for epoch, value in enumerate([0.60, 0.58, 0.5795, 0.59], start=1):
        stop = stop.update(epoch, value, min_delta=1e-3)
    assert (stop.best, stop.best_epoch, stop.waited) == (0.58, 2, 2)
    assert (stop.should_stop(2), stop.should_stop(3)) == (True, False)
    # 0.57 is below 0.58 - 0.001: epoch 5 improves and the count restarts
    stop = stop.update(5, 0.57, min_delta=1e-3)
    assert (stop.best, stop.best_epoch, stop.waited, stop.improved) == (0.57, 5, 0, True)
    # a larger value is never an improvement of a minimised metric, however large
    assert ckpt.Patience.start("min").update(1, 0.5, min_delta=0).update(2, 9.0, min_delta=0).best == 0.5


def test_logloss_monitor_keeps_the_lowest_logloss_epoch(splits, tmp_path: Path) -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    out = tmp_path / "run"
    result = train(_config(out, monitor="val_logloss", **LOGLOSS_RUN), splits=splits)
    losses = [row["val_logloss"] for row in result.history]
    aucs = [row["val_auc"] for row in result.history]
    assert result.epochs_run == 3
    # the epochs disagree, so an AUC monitor would have kept another epoch
    assert int(np.argmin(losses)) + 1 == 2 != int(np.argmax(aucs)) + 1
    assert result.best_epoch == 2
    assert result.monitor == "val_logloss" and result.best_value == min(losses)
    assert result.best_val_auc == aucs[1]  # the best epoch's AUC, not the highest AUC
    # the saved model is that epoch's: scored again, scikit-learn gives its logloss and AUC
    labels = splits.valid["label"].to_numpy()
    scores = predict_frame(keras.saving.load_model(out / "model.keras"), splits.valid, splits.contract, 1024)
    assert log_loss(labels, scores) == pytest.approx(min(losses), abs=1e-5)
    assert roc_auc_score(labels, scores) == pytest.approx(aucs[1], abs=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert (metrics["monitor"], metrics["best_epoch"], metrics["best_value"]) == (
        "val_logloss",
        2,
        min(losses),
    )
    assert metrics["best_val_auc"] == aucs[1]
    assert (state["monitor"], state["best_value"], state["best_val_auc"]) == (
        "val_logloss",
        min(losses),
        aucs[1],
    )


def _as_old_state(out: Path) -> None:
    """Rewrite ``state.json`` as a run from before ``monitor`` wrote it."""
    state_file = out / "checkpoints" / "state.json"
    state = json.loads(state_file.read_text())
    del state["monitor"], state["best_value"], state["config"]["monitor"]
    state_file.write_text(json.dumps(state))


def test_resuming_a_state_from_before_monitor_continues_on_auc(splits, tmp_path: Path) -> None:
    straight = train(_config(tmp_path / "straight", patience=1, epochs=4, **LOGLOSS_RUN), splits=splits)
    assert straight.stopped_early and straight.epochs_run == 2  # AUC peaks at epoch 1

    out = tmp_path / "old"
    train(_config(out, patience=1, epochs=1, **LOGLOSS_RUN), splits=splits)
    _as_old_state(out)
    resumed = train(_config(out, patience=1, epochs=4, **LOGLOSS_RUN), splits=splits)
    # the old state's best_val_auc is the monitored best, so epoch 2 is one epoch without gain
    assert (resumed.epochs_run, resumed.stopped_early, resumed.best_epoch) == (2, True, 1)
    assert resumed.monitor == "val_auc" and resumed.best_value == resumed.best_val_auc
    assert [r["val_auc"] for r in resumed.history] == [r["val_auc"] for r in straight.history]
    assert json.loads((out / "checkpoints" / "state.json").read_text())["monitor"] == "val_auc"


def test_resuming_with_another_monitor_is_a_mismatch(
    splits, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    train(_config(out, epochs=1), splits=splits)
    _as_old_state(out)  # an old state monitored val_auc without saying so
    with pytest.raises(ckpt.ResumeMismatch, match="monitor 'val_auc' -> 'val_logloss'"):
        train(_config(out, epochs=2, monitor="val_logloss"), splits=splits)

    cli_out = tmp_path / "cli"
    base = ["--data", "synthetic", "--rows", "1500", "--model", "lr", "--epochs", "1", "--quiet"]
    assert train_main([*base, "--out", str(cli_out), "--monitor", "val_logloss"]) == 0
    assert "best epoch 1 by val_logloss" in capsys.readouterr().out
    assert train_main([*base, "--out", str(cli_out), "--monitor", "val_auc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsys-train: error: ") and "monitor 'val_logloss' -> 'val_auc'" in err


def test_unknown_monitor_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="monitor must be one of \\['val_auc', 'val_logloss'\\]"):
        TrainConfig(out_dir=str(tmp_path), monitor="val_loss")


def test_lr_decay_sets_each_epochs_rate_and_resumes_exactly(splits, tmp_path: Path) -> None:
    straight = train(_config(tmp_path / "straight", lr_decay=0.5), splits=splits)
    saved = keras.saving.load_model(tmp_path / "straight" / "checkpoints" / "epoch-0003.keras")
    assert float(saved.optimizer.learning_rate) == pytest.approx(3e-3 * 0.5**2, rel=1e-6)

    # a run stopped after epoch 1 (its optimizer saved at 3e-3) and continued trains epochs 2
    # and 3 at the decayed rates: it ends with the straight run's weights
    out = tmp_path / "continued"
    train(_config(out, epochs=1, lr_decay=0.5), splits=splits)
    continued = train(_config(out, lr_decay=0.5), splits=splits)
    for a, b in zip(_final_weights(tmp_path / "straight"), _final_weights(out), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["val_auc"] for r in straight.history] == [r["val_auc"] for r in continued.history]

    # the decay changes training from epoch 2 on, and not before
    constant = train(_config(tmp_path / "constant"), splits=splits)
    assert constant.history[0]["val_auc"] == straight.history[0]["val_auc"]
    assert constant.history[1]["val_auc"] != straight.history[1]["val_auc"]
    with pytest.raises(ConfigError, match="lr_decay must be in \\(0, 1\\]"):
        _config(tmp_path, lr_decay=1.5)

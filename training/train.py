"""Train a CTR model with per-epoch checkpoints, exact resume and early stopping on a validation metric."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import checkpoint as ckpt
from training.atomic_files import atomic_write_text
from training.config import MONITOR_MODES, ConfigError, TrainConfig
from training.features import CONTRACT_FILENAME, FeatureContract
from training.tracking import Tracker

MODEL_FILENAME = "model.keras"
CHECKPOINT_DIR = "checkpoints"
LOG_FILENAME = "train_log.csv"
METRICS_FILENAME = "metrics.json"
CONFIG_FILENAME = "config.json"
LOG_COLUMNS = ("epoch", "loss", "val_auc", "val_logloss", "seconds", "examples_per_second")


class TrainingInterrupted(RuntimeError):
    """Raised by an interruption hook; the last completed epoch's checkpoint stays valid."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced.

    ``best_epoch`` is the epoch with the best ``monitor`` value, ``best_value``; ``best_val_auc``
    is that epoch's validation AUC whichever metric was monitored.
    """

    out_dir: Path
    best_epoch: int
    best_val_auc: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]]
    monitor: str = "val_auc"
    best_value: float = float("nan")


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from training.metrics import auc

    return float(auc(labels, scores))


def _logloss(labels: np.ndarray, scores: np.ndarray) -> float:
    from training.metrics import logloss

    return float(logloss(labels, scores))


def predict_frame(model: Any, frame: Any, contract: FeatureContract, batch_size: int) -> np.ndarray:
    """Score a DataFrame with one compiled predict pass (never per-row calls)."""
    from training.data import make_tf_dataset

    dataset = make_tf_dataset(frame, contract, batch_size, shuffle_seed=None).map(lambda x, y: x)
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float64).reshape(-1)


def _reseed_generators(model: Any, epoch: int) -> None:
    """Put every layer RNG (dropout) at a state that depends only on its seed and the epoch.

    Keras does not save ``SeedGenerator`` state in ``.keras`` files, so a resumed run would
    replay epoch 1's dropout masks; pinning the counter per epoch makes resume exact.
    """
    for variable in model.variables:
        if variable.path.endswith("seed_generator_state"):
            seed = int(np.asarray(variable.numpy())[0])
            variable.assign(np.array([seed, epoch << 20], dtype=variable.dtype))


def _save_best(model: Any, out_dir: Path) -> None:
    """Save the best model atomically as ``model.keras`` (export drops the optimizer state)."""
    ckpt.save_model(model, out_dir / MODEL_FILENAME)


def _write_log(out_dir: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(LOG_COLUMNS))
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in LOG_COLUMNS})
    atomic_write_text(out_dir / LOG_FILENAME, buffer.getvalue())


def _new_model(config: TrainConfig, contract: FeatureContract) -> Any:
    import keras

    from training.models import SEQUENCE_MODEL_NAMES, ModelConfig, build_model

    if config.model in SEQUENCE_MODEL_NAMES and not contract.sequences:
        raise ConfigError(
            f"--model {config.model} attends over a history, and the data has none: give "
            "--history-len N (synthetic, movielens) or a `history:` key in the dataset spec"
        )
    model = build_model(
        config.model, contract, config=ModelConfig.from_dict(config.model_config), seed=config.seed
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
    )
    return model


def check_resume(config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint's state in ``config.out_dir``, if any, after checking that ``config``
    trains the same way (``checkpoint.ResumeMismatch``, a ``ConfigError``, otherwise)."""
    checkpoint_dir = Path(config.out_dir) / CHECKPOINT_DIR
    state = ckpt.read_state(checkpoint_dir)
    if state is not None:
        ckpt.check_resumable(checkpoint_dir, state, config.to_dict())
    return state


def train(
    config: TrainConfig,
    *,
    splits: Any = None,
    on_batch_end: Callable[[int, int], None] | None = None,
    tracker: Tracker | None = None,
) -> TrainResult:
    """Run (or resume) training as ``config`` says; returns the best epoch's summary.

    If ``out_dir/checkpoints`` holds a checkpoint of the same training settings (``epochs``,
    ``verbose``, ``out_dir`` and ``eval_batch_size`` may differ: ``checkpoint.RESUME_FREE_FIELDS``),
    training resumes after its committed epoch with the saved weights, optimizer slots and RNG
    state; a larger ``epochs`` continues a finished run (one that stopped early stays stopped).
    Each epoch shuffles with ``seed + epoch``, so an interrupted-and-resumed run ends where an
    uninterrupted one does. The checkpoint is checked before anything is written.

    Raises:
        checkpoint.ResumeMismatch: the checkpoint trains differently (a ``ConfigError``).
    ``on_batch_end(epoch, batch)`` lets tests interrupt mid-epoch (raise TrainingInterrupted).
    ``tracker`` (MLflow, ``training.tracking``) gets the settings, every epoch's metrics and, at
    the end, the contract, config, metrics and log files.
    """
    import keras

    from training.data import load_source, make_tf_dataset

    out_dir = Path(config.out_dir)
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    state = check_resume(config)  # before anything is loaded or written
    if splits is None:
        splits = load_source(config.data, config.data_path, **config.data_options)
    contract: FeatureContract = splits.contract
    if state is not None and FeatureContract.load(out_dir) != contract:
        raise ckpt.ResumeMismatch(
            f"{out_dir}: the data now gives another feature contract than the checkpoint's; "
            "use a new --out directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    contract.save(out_dir)
    atomic_write_text(out_dir / CONFIG_FILENAME, json.dumps(config.to_dict(), indent=2) + "\n")
    tracker = tracker if tracker is not None else Tracker()
    tracker.params(config.to_dict())

    keras.utils.set_random_seed(config.seed)
    if state is not None:
        history: list[dict[str, float]] = state["history"]
        start_epoch = int(state["epoch"]) + 1
        stop = ckpt.patience_from_state(state)
        if state.get("stopped_early") or start_epoch > config.epochs:
            return _result(out_dir, state, history, _calibrate(config, out_dir, splits))
        from training.layers import load_keras_model

        model = load_keras_model(ckpt.weights_path(checkpoint_dir, state))
    else:
        model = _new_model(config, contract)
        history, start_epoch, stop = [], 1, ckpt.Patience.start(MONITOR_MODES[config.monitor])

    valid_labels = splits.valid[contract.label].to_numpy()
    stopped_early = False
    for epoch in range(start_epoch, config.epochs + 1):
        keras.utils.set_random_seed(config.seed + epoch)
        _reseed_generators(model, epoch)
        if config.lr_decay != 1.0:
            model.optimizer.learning_rate = config.learning_rate * config.lr_decay ** (epoch - 1)
        train_ds = make_tf_dataset(
            splits.train, contract, config.batch_size, shuffle_seed=config.seed + epoch
        ).repeat(config.passes)
        callbacks = (
            []
            if on_batch_end is None
            else [
                keras.callbacks.LambdaCallback(
                    on_train_batch_end=lambda batch, logs, epoch=epoch: on_batch_end(epoch, batch)
                )
            ]
        )
        started = time.perf_counter()
        fit = model.fit(train_ds, epochs=1, shuffle=False, verbose=config.verbose, callbacks=callbacks)
        seconds = time.perf_counter() - started
        scores = predict_frame(model, splits.valid, contract, config.eval_batch_size)
        val_auc = _auc(valid_labels, scores)
        row = {
            "epoch": epoch,
            "loss": float(fit.history["loss"][-1]),
            "val_auc": val_auc,
            "val_logloss": _logloss(valid_labels, scores),
            "seconds": seconds,
            "examples_per_second": len(splits.train) * config.passes / seconds,
        }
        history.append(row)
        tracker.metrics(row, step=epoch)
        if config.verbose:
            print(
                f"epoch {epoch}: loss={row['loss']:.5f} val_auc={val_auc:.5f} "
                f"val_logloss={row['val_logloss']:.5f} ({row['examples_per_second']:.0f} ex/s)"
            )
        stop = stop.update(epoch, row[config.monitor], min_delta=config.min_delta)
        if stop.improved:
            _save_best(model, out_dir)
        stopped_early = stop.should_stop(config.patience)
        state = {
            "config": config.to_dict(),
            "epoch": epoch,
            "monitor": config.monitor,
            "best_value": stop.best,
            "best_val_auc": _epoch_auc(history, stop.best_epoch),
            "best_epoch": stop.best_epoch,
            "waited": stop.waited,
            "history": history,
            "finished": stopped_early or epoch == config.epochs,
            "stopped_early": stopped_early,
        }
        _write_log(out_dir, history)
        ckpt.commit(model, checkpoint_dir, state)
        if stopped_early:
            break
    assert state is not None
    result = _result(out_dir, state, history, _calibrate(config, out_dir, splits))
    tracker.metrics(
        {
            "best_val_auc": result.best_val_auc,
            f"best_{result.monitor}": result.best_value,
            "best_epoch": result.best_epoch,
        }
    )
    tracker.artifacts(
        [out_dir / n for n in (CONTRACT_FILENAME, CONFIG_FILENAME, METRICS_FILENAME, LOG_FILENAME)]
    )
    return result


def _epoch_auc(history: list[dict[str, float]], epoch: int) -> float:
    """The validation AUC logged for ``epoch`` (NaN if no epoch ever improved, e.g. one class)."""
    return next((float(row["val_auc"]) for row in history if int(row["epoch"]) == epoch), float("nan"))


def _calibrate(config: TrainConfig, out_dir: Path, splits: Any) -> dict[str, float] | None:
    """Platt-scale the best model on validation when asked (``None``: not asked, or too few rows)."""
    if not config.calibrate or not (out_dir / MODEL_FILENAME).is_file():
        return None
    from training.calibration import MIN_ROWS, calibrate_model

    fitted = calibrate_model(out_dir / MODEL_FILENAME, splits.valid, splits.contract, config.eval_batch_size)
    if config.verbose:
        print(
            f"calibration skipped: fewer than {MIN_ROWS} validation rows, or one class"
            if fitted is None
            else f"calibrated on {fitted.rows} validation rows: logit * {fitted.scale:.4f} + "
            f"{fitted.shift:.4f}, val logloss {fitted.val_logloss_before:.5f} -> {fitted.val_logloss_after:.5f}"
        )
    return None if fitted is None else fitted.to_dict()


def _result(
    out_dir: Path,
    state: dict[str, Any],
    history: list[dict[str, float]],
    calibration: dict[str, float] | None = None,
) -> TrainResult:
    stop = ckpt.patience_from_state(state)  # also reads a state.json from before ``monitor``
    monitor = str(state.get("monitor", "val_auc"))
    result = TrainResult(
        out_dir=out_dir,
        best_epoch=stop.best_epoch,
        best_val_auc=_epoch_auc(history, stop.best_epoch),
        epochs_run=len(history),
        stopped_early=bool(state.get("stopped_early", False)),
        history=history,
        monitor=monitor,
        best_value=stop.best,
    )
    metrics = {
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_val_auc,
        "monitor": result.monitor,
        "best_value": result.best_value,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "history": history,
    }
    if calibration is not None:
        metrics["calibration"] = calibration
    atomic_write_text(out_dir / METRICS_FILENAME, json.dumps(metrics, indent=2) + "\n")
    return result

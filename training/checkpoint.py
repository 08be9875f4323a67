"""Epoch checkpoints committed in two renames, the resume check and the early-stopping rule.

A checkpoint is an epoch-numbered weights file (``epoch-0003.keras``) plus ``state.json`` naming
it. The weights file is written first (temporary name + rename), then ``state.json`` (same), and
only then are older epoch files pruned: a crash at any point leaves ``state.json`` pointing at a
complete file of the epoch it describes, so a resumed run never trains an epoch on top of itself.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from training.atomic_files import atomic_path, atomic_write_text
from training.config import MONITOR_MODES, ConfigError, TrainConfig

STATE_FILENAME = "state.json"
LEGACY_WEIGHTS = "last.keras"
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.keras$")

# TrainConfig fields a resumed run may change: they do not change what an epoch trains.
# ``epochs`` may be raised to continue a finished run; ``eval_batch_size`` only batches prediction.
# Fields that do not change the epochs trained (calibrate: a step after the last one).
RESUME_FREE_FIELDS = frozenset({"out_dir", "verbose", "epochs", "eval_batch_size", "calibrate"})


class ResumeMismatch(ConfigError):
    """The output directory holds a checkpoint of a run that trains differently."""


def weights_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.keras"


def read_state(checkpoint_dir: Path) -> dict[str, Any] | None:
    """The committed loop state, or None when no epoch was ever committed."""
    state_file = checkpoint_dir / STATE_FILENAME
    if not state_file.exists():
        return None
    try:
        return json.loads(state_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # state.json is written by rename, so this is outside damage
        raise ResumeMismatch(f"{state_file} is not valid JSON ({exc}); use a new --out directory") from exc


def patience_from_state(state: dict[str, Any]) -> Patience:
    """The early-stopping count a committed state resumes with.

    A state written before ``monitor`` existed followed validation AUC and kept its best value
    as ``best_val_auc`` only; since then ``monitor`` and ``best_value`` (the monitored metric's
    best) are recorded, and ``best_val_auc`` is the AUC of the best epoch, whatever the monitor.
    """
    monitor = str(state.get("monitor", "val_auc"))
    if monitor not in MONITOR_MODES:
        raise ResumeMismatch(f"state.json monitors {monitor!r}, not one of {sorted(MONITOR_MODES)}")
    best = state["best_value"] if "best_value" in state else state["best_val_auc"]
    return Patience(float(best), int(state["best_epoch"]), int(state["waited"]), MONITOR_MODES[monitor])


def weights_path(checkpoint_dir: Path, state: dict[str, Any]) -> Path:
    """The weights file the committed state points at (``last.keras`` for pre-commit checkpoints)."""
    return checkpoint_dir / str(state.get("weights", LEGACY_WEIGHTS))


def check_resumable(checkpoint_dir: Path, state: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse a resume whose config trains differently from the checkpoint's, naming the fields.

    Raises:
        ResumeMismatch: on differing training fields or a missing weights file.
    """
    # a checkpoint written before a field existed trained with that field's default
    saved = {**_field_defaults(), **state.get("config", {})}
    differing = sorted(
        key
        for key in set(saved) | set(config)
        if key not in RESUME_FREE_FIELDS and saved.get(key) != config.get(key)
    )
    if differing:
        detail = ", ".join(f"{k} {saved.get(k)!r} -> {config.get(k)!r}" for k in differing)
        raise ResumeMismatch(
            f"{checkpoint_dir} holds a checkpoint trained with other settings ({detail}); "
            "use a new --out directory or the checkpoint's settings"
        )
    if not weights_path(checkpoint_dir, state).is_file():
        raise ResumeMismatch(
            f"{checkpoint_dir}: state.json names {weights_path(checkpoint_dir, state).name}, which is missing"
        )


def _field_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def commit(model: Any, checkpoint_dir: Path, state: dict[str, Any]) -> None:
    """Write the epoch's weights, then ``state.json`` pointing at them, then prune older files."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = weights_name(int(state["epoch"]))
    save_model(model, checkpoint_dir / name)
    commit_state(checkpoint_dir, {**state, "weights": name})
    prune(checkpoint_dir, keep=name)


def save_model(model: Any, path: Path) -> None:
    """``model.save`` to ``path`` through :func:`atomic_path` (a whole ``.keras`` file or the old one).

    ``model.save`` needs a ``.keras`` name, so it writes ``.<name>.<random>.keras`` beside the
    temporary file and that is renamed onto it.
    """
    with atomic_path(path) as tmp:
        keras_tmp = tmp.with_suffix(".keras")
        try:
            model.save(keras_tmp)
            keras_tmp.replace(tmp)
        finally:
            keras_tmp.unlink(missing_ok=True)


def commit_state(checkpoint_dir: Path, state: dict[str, Any]) -> None:
    """The commit point: after this rename the new epoch is the one a resume starts from."""
    atomic_write_text(checkpoint_dir / STATE_FILENAME, json.dumps(state, indent=2) + "\n")


def prune(checkpoint_dir: Path, *, keep: str) -> None:
    """Remove every epoch file but ``keep``, the legacy ``last.keras`` and stray temporary files."""
    for path in checkpoint_dir.iterdir():
        stale_epoch = _EPOCH_FILE.match(path.name) and path.name != keep
        temporary = path.name.startswith(".") and path.name.endswith(".keras")
        if stale_epoch or temporary or path.name == LEGACY_WEIGHTS:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Patience:
    """Early stopping as ``keras.callbacks.EarlyStopping`` counts it, on a metric to maximise
    (``mode="max"``, e.g. AUC) or to minimise (``mode="min"``, e.g. logloss).

    An epoch improves when ``value > best + min_delta`` (max) or ``value < best - min_delta``
    (min); after ``patience`` epochs in a row without improvement training stops
    (``patience=0``: at the first epoch that does not improve).
    """

    best: float
    best_epoch: int
    waited: int
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")

    @classmethod
    def start(cls, mode: str) -> Patience:
        """Before the first epoch: any finite value improves on the starting best."""
        return cls(best=-math.inf if mode == "max" else math.inf, best_epoch=0, waited=0, mode=mode)

    def update(self, epoch: int, value: float, *, min_delta: float) -> Patience:
        if self.mode == "max":
            better = value > self.best + min_delta
        else:
            better = value < self.best - min_delta
        if better:
            return Patience(best=value, best_epoch=epoch, waited=0, mode=self.mode)
        return Patience(best=self.best, best_epoch=self.best_epoch, waited=self.waited + 1, mode=self.mode)

    @property
    def improved(self) -> bool:
        return self.waited == 0

    def should_stop(self, patience: int) -> bool:
        return self.waited > 0 and self.waited >= patience

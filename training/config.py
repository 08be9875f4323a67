"""The training run's one config object, from flags and/or a JSON/YAML file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DATA_SOURCES = ("synthetic", "movielens", "criteo")

# The validation metrics early stopping and best-model selection may follow, with the direction
# that counts as better (``keras.callbacks.EarlyStopping``'s ``mode``).
MONITOR_MODES = {"val_auc": "max", "val_logloss": "min"}

# Training settings a model gets unless the config file or a flag says otherwise. ``lr`` is convex:
# full-batch Adam (one batch up to 2**20 rows, so every step follows the exact gradient of the
# mean loss + L2, whose minimiser is scikit-learn's LogisticRegression with C = 1 / (2 n l2)) at
# 0.1 for 50 steps an epoch reaches that optimum; the deep defaults (batches of 1024 at 1e-3 for
# 5 epochs) stopped ``lr`` far from it (tests/training/test_lr_optimum.py).
MODEL_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "lr": {"batch_size": 2**20, "learning_rate": 0.1, "passes": 50, "epochs": 10},
}


def model_defaults(model: str) -> dict[str, Any]:
    """The TrainConfig values ``model`` trains with unless they are set (empty for most models)."""
    return dict(MODEL_TRAIN_DEFAULTS.get(model, {}))


class ConfigError(ValueError):
    """A training config value or file is invalid."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` beside the model.

    ``data_options`` go to ``training.data.load_source`` (e.g. ``num_rows``, ``seed`` for synthetic
    data); ``model_config`` goes to ``training.models.ModelConfig.from_dict``. ``passes`` is the
    number of passes over the training data in one epoch (one validation and checkpoint), for
    models whose epochs are single full-batch steps (``model_defaults``). ``monitor`` is the
    validation metric early stopping counts and the saved best model is chosen by
    (``MONITOR_MODES``): AUC ranks, logloss also rewards calibrated probabilities. Epoch ``e``
    trains at ``learning_rate * lr_decay ** (e - 1)``: a function of the epoch alone, so a resumed
    run sets the rate an uninterrupted one had. ``calibrate`` fits Platt scaling of the best
    model's logit on validation after training (``training.calibration``; in the graph, so
    export serves it); it does not change training, so a finished run may turn it on.
    """

    out_dir: str
    data: str = "synthetic"
    data_path: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    model: str = "deepfm"
    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 1024
    learning_rate: float = 1e-3
    seed: int = 0
    patience: int = 2
    min_delta: float = 1e-4
    eval_batch_size: int = 8192
    verbose: int = 1
    passes: int = 1
    monitor: str = "val_auc"
    lr_decay: float = 1.0
    calibrate: bool = False

    def __post_init__(self) -> None:
        if self.data not in DATA_SOURCES and not self.data.lower().endswith((".yaml", ".yml")):
            raise ConfigError(
                f"data must be one of {DATA_SOURCES} or a dataset spec .yaml, got {self.data!r}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size", "passes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience!r}")
        if self.monitor not in MONITOR_MODES:
            raise ConfigError(f"monitor must be one of {sorted(MONITOR_MODES)}, got {self.monitor!r}")
        if not self.out_dir:
            raise ConfigError("out_dir is required")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown} (known: {sorted(known)})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (anything else) mapping of TrainConfig fields."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc}") from exc
    try:
        if source.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json and yaml raise different types; both mean "unparsable"
        raise ConfigError(f"config file {source} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {source} must hold a mapping, got {type(data).__name__}")
    return data

"""Read a training run directory (``training/train.py``'s output) for the export commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.errors import ContractMismatchError, ExportError
from training.features import ContractError, FeatureContract

MODEL_FILENAME = "model.keras"
METRICS_FILENAME = "metrics.json"
CONFIG_FILENAME = "config.json"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class TrainingRun:
    """A trained model with its contract and what training recorded about it."""

    path: Path
    model: Any
    contract: FeatureContract
    config: dict[str, Any]
    metrics: dict[str, Any]

    def model_card(self) -> dict[str, Any]:
        """Card facts only the run knows: data source and options, model, metrics, run path."""
        return {
            "training_run": str(self.path),
            "data": {
                "source": self.config.get("data"),
                "path": self.config.get("data_path"),
                "options": self.config.get("data_options", {}),
            },
            "model": {"name": self.config.get("model"), "config": self.config.get("model_config", {})},
            "training_config": self.config,
            "metrics": self.metrics,
        }


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ExportError(f"{path} not found")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path} must hold a JSON object")
    return data


def load_training_run(path: str | Path, *, contract_path: str | Path | None = None) -> TrainingRun:
    """Load ``model.keras`` (without optimizer), the contract, ``config.json`` and ``metrics.json``.

    Args:
        path: the run directory (``--out`` of training).
        contract_path: use this contract instead of the run's ``feature_contract.json``.

    Raises:
        ExportError: the directory or the model is missing or unreadable.
        ContractMismatchError: the contract differs from the one built into the model.
    """

    from training.layers import load_keras_model
    from training.models import split_model

    run = Path(path)
    if not run.is_dir():
        raise ExportError(f"model directory {run} does not exist")
    model_file = run / MODEL_FILENAME
    if not model_file.is_file():
        raise ExportError(f"model directory {run} has no {MODEL_FILENAME}")
    try:
        contract = FeatureContract.load(contract_path if contract_path is not None else run)
    except ContractError as exc:
        raise ExportError(str(exc)) from exc
    try:
        model = load_keras_model(model_file, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, TypeError... for bad files
        raise ExportError(f"cannot load {model_file}: {exc}") from exc
    try:
        preprocess, _ = split_model(model)
    except ValueError:
        preprocess = None
    if preprocess is not None and preprocess.contract != contract:
        raise ContractMismatchError(
            f"the contract {contract_path or run / 'feature_contract.json'} differs from the one built into "
            f"{model_file} (features {list(contract.names)} vs {list(preprocess.contract.names)})"
        )
    return TrainingRun(
        path=run,
        model=model,
        contract=contract,
        config=_read_json(run / CONFIG_FILENAME, required=False),
        metrics=_read_json(run / METRICS_FILENAME, required=False),
    )


def load_split(
    config: dict[str, Any], split: str, *, source: str | None = None, data_path: str | None = None
) -> Any:
    """One split of the run's data, loaded as training did (``training.data.load_source``)."""
    from training.data import load_source

    if split not in SPLITS:
        raise ExportError(f"split must be one of {SPLITS}, got {split!r}")
    source = source or config.get("data")
    if not source:
        raise ExportError("no data source: the run has no config.json; pass --data (and --data-path)")
    options = dict(config.get("data_options", {})) if source == config.get("data") else {}
    path = data_path if data_path is not None else config.get("data_path")
    splits = load_source(source, path, **options)
    return getattr(splits, split)

"""Score batches through a loaded SavedModel signature or a Keras model, in fixed-size chunks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.batches import batch_size_of, check_inputs, encode_strings, slice_inputs
from export.errors import ExportError
from export.signatures import SERVING_DEFAULT
from training.features import FeatureContract

DEFAULT_BATCH = 2000


def load_saved_model(version_dir: Path) -> Any:
    """``tf.saved_model.load`` with a clear error naming the directory."""
    import tensorflow as tf

    version_dir = Path(version_dir)
    if not (version_dir / "saved_model.pb").is_file():
        raise ExportError(f"{version_dir} is not a SavedModel directory (no saved_model.pb)")
    try:
        return tf.saved_model.load(str(version_dir))
    except Exception as exc:  # TF raises many unrelated types for corrupt or incompatible models
        raise ExportError(f"tf.saved_model.load failed for {version_dir}: {exc}") from exc


def to_tensors(contract: FeatureContract, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Wire-dtype tensors for a signature call (strings as UTF-8 bytes)."""
    import tensorflow as tf

    out = {}
    for feature in contract.features:
        values = inputs[feature.name]
        if feature.dtype == "string":
            values = encode_strings(values)
        out[feature.name] = tf.constant(values, dtype=tf.dtypes.as_dtype(feature.dtype))
    return out


def signature_outputs(
    signature: Any,
    contract: FeatureContract,
    inputs: Mapping[str, np.ndarray],
    *,
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, np.ndarray]:
    """Every output of a ``serving_default``-style signature over ``inputs``, concatenated.

    The batch is validated against the contract first (names, rank 1, exact dtypes), so a
    float64 or ``[N, 1]`` column is refused with a message naming the feature.
    """
    check_inputs(contract, inputs)
    total = batch_size_of(inputs)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, total, batch_size):
        chunk = slice_inputs(inputs, start, min(start + batch_size, total))
        for key, value in signature(**to_tensors(contract, chunk)).items():
            parts.setdefault(key, []).append(np.asarray(value))
    return {key: np.concatenate(values) for key, values in parts.items()}


def score_saved_model(
    version_dir: Path | None,
    contract: FeatureContract,
    inputs: Mapping[str, np.ndarray],
    *,
    loaded: Any = None,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Click probabilities (``ctr``) of an exported version for every row of ``inputs``."""
    loaded = loaded if loaded is not None else load_saved_model(Path(version_dir))
    return signature_outputs(loaded.signatures[SERVING_DEFAULT], contract, inputs, batch_size=batch_size)[
        "ctr"
    ]


def score_keras(
    model: Any,
    inputs: Mapping[str, np.ndarray],
    contract: FeatureContract,
    *,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """The Keras model's probabilities, chunked exactly like ``signature_outputs`` for a fair diff."""
    total = batch_size_of(inputs)
    parts = []
    for start in range(0, total, batch_size):
        chunk = to_tensors(contract, slice_inputs(inputs, start, min(start + batch_size, total)))
        out = model(chunk, training=False)
        parts.append(np.asarray(out.numpy() if hasattr(out, "numpy") else out).reshape(-1))
    return np.concatenate(parts)

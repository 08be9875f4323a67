"""Raw-feature batches for the serving signature: built from frames, checked against the contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from export.errors import ContractMismatchError
from training.features import FeatureContract

# Wire dtype of the contract -> numpy dtype kinds accepted for it. Anything else (float64 for a
# float32 input, int32 for an int64 one, bytes for floats) is refused instead of silently cast:
# a loaded signature casts numpy float64 to float32 without a word, which hides client bugs.
_NUMPY_KINDS = {"string": ("O", "S", "U"), "int64": ("i",), "float32": ("f",)}
_NUMPY_DTYPES = {"int64": np.int64, "float32": np.float32}


def check_inputs(contract: FeatureContract, inputs: Mapping[str, Any], *, source: str = "batch") -> int:
    """Validate a batch for ``serving_default``; returns the batch size.

    Every contract feature must be present, no extra key, each a rank-1 array of the wire dtype,
    all of one length. This is the rank check that guards the ``[N, 1]`` trap: a ``[N, 1]``
    string column would otherwise broadcast against ``[N]`` columns into ``[N, N]`` scores.

    Raises:
        ContractMismatchError: naming the first offending feature and what was wrong with it.
    """
    missing = [n for n in contract.names if n not in inputs]
    extra = sorted(set(inputs) - set(contract.names))
    if missing or extra:
        raise ContractMismatchError(f"{source}: missing features {missing}, unexpected features {extra}")
    size = None
    for feature in contract.features:
        value = np.asarray(inputs[feature.name])
        where = f"{source}: feature {feature.name!r}"
        if value.ndim != 1:
            raise ContractMismatchError(
                f"{where} must be rank 1 with shape [batch], got shape {list(value.shape)}"
            )
        if value.dtype.kind not in _NUMPY_KINDS[feature.dtype] or (
            feature.dtype in _NUMPY_DTYPES and value.dtype != _NUMPY_DTYPES[feature.dtype]
        ):
            raise ContractMismatchError(f"{where} must be {feature.dtype}, got {value.dtype}")
        if size is None:
            size = len(value)
        elif len(value) != size:
            raise ContractMismatchError(f"{where} has {len(value)} rows, other features have {size}")
    assert size is not None
    return size


def frame_inputs(frame: Any, contract: FeatureContract, *, source: str = "frame") -> dict[str, np.ndarray]:
    """Contract columns of a pandas DataFrame as wire-dtype numpy arrays (object str, int64, float32)."""
    missing = [n for n in contract.names if n not in frame.columns]
    if missing:
        raise ContractMismatchError(f"{source}: missing feature columns {missing}")
    out: dict[str, np.ndarray] = {}
    for feature in contract.features:
        column = frame[feature.name]
        if feature.dtype == "string":
            out[feature.name] = np.asarray([str(v) for v in column.to_numpy()], dtype=object)
        elif feature.dtype == "int64":
            out[feature.name] = column.to_numpy(dtype=np.int64)
        else:
            out[feature.name] = column.to_numpy(dtype=np.float32)
    return out


def encode_strings(values: Any) -> np.ndarray:
    """A string column as UTF-8 ``bytes`` objects, the form TF string tensors and protos take."""
    return np.asarray([v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values], dtype=object)


def slice_inputs(inputs: Mapping[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows ``[start, stop)`` of every feature."""
    return {name: values[start:stop] for name, values in inputs.items()}


def take_rows(inputs: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The rows at ``index`` of every feature (used to build batches of any size from real rows)."""
    return {name: values[index] for name, values in inputs.items()}


def batch_size_of(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows in a batch (the length of its first feature)."""
    return len(next(iter(inputs.values())))

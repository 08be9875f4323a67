"""Host-side (numpy, no TensorFlow) replica of ``FeaturePreprocessor`` for running the ONNX core."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from training.features import (
    MULTI_VALUE_SEPARATOR,
    ContractError,
    Feature,
    FeatureContract,
    FeatureKind,
)
from training.models.farmhash import fingerprint64

_SEPARATOR = MULTI_VALUE_SEPARATOR.encode("utf-8")


def preprocess_numpy(contract: FeatureContract, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Raw feature columns -> the ``core`` model's inputs, bit-for-bit what the graph computes.

    Args:
        contract: The feature contract the model was built from.
        columns: Feature name -> rank-1 array (str/bytes objects, integers or floats); extra
            columns are ignored.

    Returns:
        Feature name -> int32 ``[batch]`` ids, int32 ``[batch, max_len]`` ids padded with -1
        (multi-valued) or float32 ``[batch]`` normalised numerics, in contract order.

    Raises:
        ContractError: naming the feature (and row) when a column is missing, not rank 1, of
            different length than the others, or holds a value of the wrong type.
    """
    contract.validate_columns(columns, source="preprocess_numpy")
    arrays = {f.name: _column(f, columns[f.name]) for f in contract.features}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ContractError(f"preprocess_numpy: feature columns differ in length: {lengths}")
    out: dict[str, np.ndarray] = {}
    for feature in contract.features:
        column = arrays[feature.name]
        if feature.kind is FeatureKind.NUMERIC:
            out[feature.name] = _normalise(feature, column)
        elif feature.is_multi_valued:
            out[feature.name] = _multi_ids(feature, column)
        else:
            out[feature.name] = _ids(feature, column)
    return out


def _column(feature: Feature, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ContractError(f"feature {feature.name!r}: expected a rank-1 column, got shape {array.shape}")
    if feature.kind is FeatureKind.NUMERIC:
        if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
            raise ContractError(f"feature {feature.name!r}: numeric column has dtype {array.dtype}")
    elif feature.kind is FeatureKind.CATEGORICAL_INT:
        if not np.issubdtype(array.dtype, np.integer):
            raise ContractError(f"feature {feature.name!r}: int column has dtype {array.dtype}")
    return array


def _normalise(feature: Feature, column: np.ndarray) -> np.ndarray:
    x = column.astype(np.float32)
    if feature.transform == "log1p":
        # Same route as the graph: float32 input widened to float64, sign(x) * log1p(|x|),
        # rounded back to float32 (float32 log1p implementations differ by a few ulp).
        wide = x.astype(np.float64)
        with np.errstate(invalid="ignore"):
            x = (np.sign(wide) * np.log1p(np.abs(wide))).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        y = (x - np.float32(feature.mean)) / np.float32(feature.std)
    y[~np.isfinite(y)] = np.float32(0.0)
    return y.astype(np.float32, copy=False)


def _token_mapper(feature: Feature) -> Callable[[bytes], int]:
    """UTF-8 bytes of one value -> its id, memoised (columns repeat values heavily)."""
    memo: dict[bytes, int] = {}
    if feature.hash_buckets is not None:
        buckets = feature.hash_buckets

        def lookup(token: bytes) -> int:
            return fingerprint64(token) % buckets

    else:
        assert feature.vocabulary is not None
        vocabulary = {str(v).encode("utf-8"): i + feature.num_oov for i, v in enumerate(feature.vocabulary)}
        num_oov = feature.num_oov

        def lookup(token: bytes) -> int:
            known = vocabulary.get(token)
            return known if known is not None else fingerprint64(token) % num_oov

    def mapped(token: bytes) -> int:
        found = memo.get(token)
        if found is None:
            found = memo[token] = lookup(token)
        return found

    return mapped


def _as_bytes(feature: Feature, value: Any, row: int) -> bytes:
    if feature.kind is FeatureKind.CATEGORICAL_INT:
        return str(int(value)).encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ContractError(f"feature {feature.name!r}, row {row}: expected a string, got {value!r}")


def _ids(feature: Feature, column: np.ndarray) -> np.ndarray:
    mapped = _token_mapper(feature)
    return np.fromiter(
        (mapped(_as_bytes(feature, v, row)) for row, v in enumerate(column.tolist())),
        dtype=np.int32,
        count=len(column),
    )


def _multi_ids(feature: Feature, column: np.ndarray) -> np.ndarray:
    mapped = _token_mapper(feature)
    out = np.full((len(column), feature.max_len), -1, dtype=np.int32)
    for row, value in enumerate(column.tolist()):
        tokens = [t for t in _as_bytes(feature, value, row).split(_SEPARATOR) if t][: feature.max_len]
        out[row, : len(tokens)] = [mapped(t) for t in tokens]
    return out

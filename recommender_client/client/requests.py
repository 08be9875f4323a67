"""Model inputs from the feature contract, and checks on what the model sends back.

Every input is a rank-1 tensor of shape ``[N]`` in the contract's wire dtype. Sending ``[N, 1]``
(or getting ``[N, N]`` back because a server broadcast ``[N]`` against ``[N, 1]``) is the classic
TF Serving shape trap, so requests are always 1-D and ``validate_outputs`` insists on ``[N]``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from recommender_client.client.errors import BadResponse, InvalidRequest
from training.features import ContractError, Feature, FeatureContract, FeatureKind, join_multi

_NUMERIC_TYPES = (int, float, np.integer, np.floating)
_INT_TYPES = (int, np.integer)


def _type_error(feature: Feature, row: int, value: Any, want: str) -> InvalidRequest:
    return InvalidRequest(
        f"feature {feature.name!r} row {row}: expected {want}, got {type(value).__name__} {value!r}"
    )


def _numeric(feature: Feature, values: list[Any]) -> np.ndarray:
    kinds = {type(v) for v in values}
    if bool in kinds or np.bool_ in kinds or not all(issubclass(k, _NUMERIC_TYPES) for k in kinds):
        for row, v in enumerate(values):
            if isinstance(v, bool | np.bool_) or not isinstance(v, _NUMERIC_TYPES):
                raise _type_error(feature, row, v, "a number")
    column = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(column)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidRequest(f"feature {feature.name!r} row {row}: non-finite value {values[row]!r}")
    too_big = np.abs(column) > np.finfo(np.float32).max
    if too_big.any():
        row = int(np.flatnonzero(too_big)[0])
        raise InvalidRequest(f"feature {feature.name!r} row {row}: {values[row]!r} overflows float32")
    return column.astype(np.float32)


def _integer(feature: Feature, values: list[Any]) -> np.ndarray:
    kinds = {type(v) for v in values}
    if bool in kinds or np.bool_ in kinds or not all(issubclass(k, _INT_TYPES) for k in kinds):
        for row, v in enumerate(values):
            if isinstance(v, bool | np.bool_) or not isinstance(v, _INT_TYPES):
                raise _type_error(feature, row, v, "an integer")
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        row = next(i for i, v in enumerate(values) if not -(2**63) <= int(v) < 2**63)
        raise InvalidRequest(
            f"feature {feature.name!r} row {row}: {values[row]!r} does not fit int64"
        ) from None


def _string(feature: Feature, values: list[Any]) -> np.ndarray:
    if not all(isinstance(v, str) for v in values):
        row = next(i for i, v in enumerate(values) if not isinstance(v, str))
        raise _type_error(feature, row, values[row], "a string")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _multi(feature: Feature, values: list[Any]) -> np.ndarray:
    joined: list[str] = []
    for row, v in enumerate(values):
        if isinstance(v, str):
            joined.append(v)  # already in wire form, e.g. "a|b"
            continue
        if not isinstance(v, Sequence | np.ndarray) or not all(isinstance(t, str) for t in v):
            raise _type_error(feature, row, v, "a list of strings (or one '|'-joined string)")
        try:
            joined.append(join_multi(list(v)))
        except ContractError as exc:
            raise InvalidRequest(f"feature {feature.name!r} row {row}: {exc}") from None
    out = np.empty(len(joined), dtype=object)
    out[:] = joined
    return out


_ENCODERS = {
    FeatureKind.NUMERIC: _numeric,
    FeatureKind.CATEGORICAL_INT: _integer,
    FeatureKind.CATEGORICAL_STRING: _string,
    FeatureKind.MULTI_CATEGORICAL: _multi,
    FeatureKind.SEQUENCE: _multi,
}


def build_request_columns(
    contract: FeatureContract,
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore: Collection[str] = (),
) -> dict[str, np.ndarray]:
    """One ``[N]`` array per contract feature, in the contract's order and wire dtype.

    A value that is absent or ``None`` takes ``feature.default`` (the cold-start value);
    multi-valued features take a list of strings, joined with ``|``.

    Args:
        contract: The model's feature contract.
        rows: One mapping of feature name -> raw value per candidate.
        ignore: Keys allowed in rows that are not features (e.g. ``item_id``); any other key
            not in the contract is an error, so a misspelt feature never silently becomes a default.

    Returns:
        Feature name -> float32, int64 or object(str) array of length ``len(rows)``.

    Raises:
        InvalidRequest: no rows, an unknown feature name, a value of the wrong type, or a
            non-finite number; the message names the feature and the row.
    """
    if len(rows) == 0:
        raise InvalidRequest("cannot build a request from zero rows")
    known = set(contract.names) | set(ignore)
    for row_number, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidRequest(
                f"row {row_number}: expected a mapping of feature -> value, got {type(row).__name__}"
            )
        if not known.issuperset(row):
            unknown = sorted(str(k) for k in row if k not in known)
            raise InvalidRequest(
                f"row {row_number}: unknown feature names {unknown} (contract has {list(contract.names)})"
            )
    columns: dict[str, np.ndarray] = {}
    for feature in contract.features:
        name, default = feature.name, feature.default
        values = [row.get(name) for row in rows]
        if None in values:
            values = [default if v is None else v for v in values]
        columns[name] = _ENCODERS[feature.kind](feature, values)
    return columns


def validate_outputs(
    outputs: Mapping[str, np.ndarray],
    *,
    num_rows: int,
    names: Collection[str] = ("ctr",),
    finite: bool = True,
) -> dict[str, np.ndarray]:
    """Check each named output is a numeric ``[num_rows]`` vector (finite unless told otherwise).

    Raises:
        BadResponse: an output is missing, has another shape (``[N, N]``, ``[N, 1]``, wrong
            length), is not numeric, or holds NaN/inf.
    """
    checked: dict[str, np.ndarray] = {}
    for name in names:
        if name not in outputs:
            raise BadResponse(f"model returned no output {name!r} (got {sorted(outputs)})")
        array = np.asarray(outputs[name])
        if array.shape != (num_rows,):
            raise BadResponse(
                f"output {name!r} has shape {list(array.shape)}, expected [{num_rows}] (one score per row)"
            )
        if array.dtype.kind not in "fiu":
            raise BadResponse(f"output {name!r} has dtype {array.dtype}, expected a number per row")
        if finite and array.dtype.kind == "f" and not np.isfinite(array).all():
            row = int(np.flatnonzero(~np.isfinite(array))[0])
            raise BadResponse(f"output {name!r} row {row} is {array[row]} (not finite)")
        checked[name] = array
    return checked


__all__ = ["build_request_columns", "validate_outputs"]

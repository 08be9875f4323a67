"""Numpy <-> TF Serving's columnar JSON (``{"inputs": {...}}`` / ``{"outputs": ...}``).

JSON carries no dtypes: on the way in the server casts to the signature's dtype; on the way out
integers decode as int64, numbers with a fraction as ``float_dtype`` (float32 by default, which is
what served models output: the JSON text of a float32 round-trips exactly), strings as bytes, the
same types the gRPC client returns. Binary strings travel as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from recommender_client.client.errors import BadResponse, InvalidRequest


def _string_leaf(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    raise InvalidRequest(
        f"input {name!r}: string tensors take str or bytes, got {type(value).__name__} {value!r}"
    )


def all_str(values: list[Any]) -> bool:
    """Whether every value is a str (``str.join`` checks that in C, failing on the first other type)."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _map_nested(value: Any, leaf: Any) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, leaf) for v in value]
    return leaf(value)


def array_to_json(array: np.ndarray, *, name: str = "tensor") -> Any:
    """A JSON-ready nested list (or scalar) for one input tensor."""
    array = np.asarray(array)
    if array.dtype.kind in "OUS":
        values = array.tolist()
        if array.ndim == 1:
            if all_str(values):  # the common case, checked in C: JSON takes str as they are
                return values
            return [_string_leaf(v, name) for v in values]
        return _map_nested(values, lambda v: _string_leaf(v, name))
    if array.dtype.kind not in "biuf":
        raise InvalidRequest(f"input {name!r}: cannot send numpy dtype {array.dtype} as JSON")
    return array.tolist()


def _bytes_leaf(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as exc:
            raise BadResponse(f"output {name!r}: bad base64 string: {exc}") from None
    raise BadResponse(f"output {name!r}: cannot decode JSON value {value!r} as a tensor element")


def json_to_array(value: Any, *, name: str = "tensor", float_dtype: type = np.float32) -> np.ndarray:
    """Decode one output's JSON value (nested lists of one type, rectangular) to an array."""
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise BadResponse(f"output {name!r}: not a rectangular tensor: {exc}") from None
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(float_dtype)
    if kind in "iu":
        return array.astype(np.int64)
    if kind == "b":
        return array
    if kind in "UO":
        flat = array.ravel()
        out = np.empty(flat.shape, dtype=object)
        for i, item in enumerate(flat.tolist()):
            out[i] = _bytes_leaf(item, name)
        return out.reshape(array.shape)
    raise BadResponse(f"output {name!r}: cannot decode JSON value of numpy kind {kind!r}")

"""TF Serving's REST JSON -> tensors: the "instances" (row) and "inputs" (columnar) predict formats."""

# Follows `tensorflow_serving/util/json_tensor.cc` rule by rule and message by message; the
# common cases (flat lists of one JSON type) take vectorised fast paths, and anything unusual
# falls back to the element-by-element walk that produces TF Serving's exact error text.

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2 as DT

from serving.model_server.errors import ServingError
from serving.model_server.json_debug import value_to_string
from serving.model_server.json_parse import parse_body
from serving.model_server.json_text import json_type_name
from serving.model_server.tensors import dtype_name, numpy_dtype

ROW = "row"
COLUMNAR = "columnar"

MAX_RANK = 64  # numpy's limit on dimensions (TensorShape's is 254); a deeper list is refused
_INT_RANGES = {  # rapidjson IsInt / IsInt64 / IsUint / IsUint64
    DT.DT_INT32: (-(2**31), 2**31 - 1),
    DT.DT_INT16: (-(2**31), 2**31 - 1),
    DT.DT_INT8: (-(2**31), 2**31 - 1),
    DT.DT_UINT8: (-(2**31), 2**31 - 1),
    DT.DT_INT64: (-(2**63), 2**63 - 1),
    DT.DT_UINT32: (0, 2**32 - 1),
    DT.DT_UINT64: (0, 2**64 - 1),
}


def invalid(message: str) -> ServingError:
    """Every JSON format problem is INVALID_ARGUMENT (HTTP 400) in TF Serving."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a request body (json_parse.parse_body); TF Serving's error for non-object JSON."""
    doc = parse_body(body)
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {value_to_string(doc)} Is not object")
    return doc


def signature_name(doc: dict[str, Any]) -> str:
    """The optional "signature_name" of a request ("" when absent)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {value_to_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


# ----------------------------------------------------------------------------- values
def _type_error(value: Any, dtype: int) -> ServingError:
    return invalid(
        f"JSON Value: {value_to_string(value)} Type: {json_type_name(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def is_b64(value: Any) -> bool:
    """Binary data is written {"b64": "<base64>"}: an object with exactly that one string key."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value: Any) -> bytes:
    """The bytes of a {"b64": ...} object, with TF Serving's errors for anything else."""
    if not is_b64(value):
        raise invalid(f"JSON Value: {value_to_string(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _convert_scalar(value: Any, dtype: int) -> Any:
    """One leaf value -> a Python value for the tensor (`AddValueToTensor`)."""
    if isinstance(value, dict):
        if dtype == DT.DT_STRING:
            return decode_b64(value)
        raise _type_error(value, dtype)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in (DT.DT_FLOAT, DT.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        return float(value)  # rapidjson's GetFloat/GetDouble: no precision check since TF 2.5
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise _type_error(value, dtype)
        return value
    if dtype == DT.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if dtype == DT.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {value_to_string(value)} to type: {dtype_name(dtype)}",
    )


def _dense_shape(value: Any) -> list[int]:
    """`GetDenseTensorShape`: sizes of the first element at each nesting level.

    Refuses more than MAX_RANK levels (ours: numpy's limit), which also bounds `_fill`'s
    recursion whatever the nesting of the body.
    """
    shape: list[int] = []
    while isinstance(value, list):
        if len(shape) == MAX_RANK:
            raise invalid(
                f"JSON value nests lists deeper than {MAX_RANK} levels; this server supports "
                f"tensors of at most {MAX_RANK} dimensions"
            )
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list[Any]) -> None:
    """`FillTensorProto`: walk the nested lists, checking sizes and leaf levels."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid(
                f"JSON Value: {value_to_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_convert_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _fast_flat(values: list[Any], dtype: int) -> np.ndarray | None:
    """Vectorised conversion of a flat list of plain scalars; None when the slow path is needed."""
    kinds = set(map(type, values))
    if dtype in (DT.DT_FLOAT, DT.DT_DOUBLE) and kinds <= {float, int}:
        array = np.array(values, dtype=np.float64)
        return _to_float32(array) if dtype == DT.DT_FLOAT else array
    if dtype in _INT_RANGES and kinds == {int}:
        low, high = _INT_RANGES[dtype]
        if min(values) < low or max(values) > high:
            return None
        wide = np.array(values, dtype=np.uint64 if dtype == DT.DT_UINT64 else np.int64)
        return wide.astype(numpy_dtype(dtype))
    if dtype == DT.DT_STRING and kinds == {str}:
        out = np.empty(len(values), dtype=object)
        joined = "\x00".join(values)
        if joined.count("\x00") == len(values) - 1:  # no NUL inside a value: one C-level split
            out[:] = joined.encode("utf-8").split(b"\x00")
        else:
            out[:] = [v.encode("utf-8") for v in values]
        return out
    if dtype == DT.DT_BOOL and kinds == {bool}:
        return np.array(values, dtype=np.bool_)
    return None


def _to_float32(array: np.ndarray) -> np.ndarray:
    """rapidjson's GetFloat, a C cast: doubles beyond float32's range become +-inf."""
    with np.errstate(over="ignore"):
        return array.astype(np.float32)


def _to_array(values: list[Any], shape: list[int], dtype: int) -> np.ndarray:
    np_dtype = numpy_dtype(dtype)
    if dtype == DT.DT_FLOAT:
        return _to_float32(np.array(values, dtype=np.float64)).reshape(shape)
    if dtype == DT.DT_STRING:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(shape)
    if dtype in _INT_RANGES:
        wide = np.array(values, dtype=np.uint64 if dtype == DT.DT_UINT64 else np.int64)
        return wide.astype(np_dtype).reshape(shape)
    return np.array(values, dtype=np_dtype).reshape(shape)


def json_to_array(value: Any, dtype: int) -> np.ndarray:
    """One JSON value (scalar, b64 object or nested lists) -> an array of `dtype`."""
    if isinstance(value, list) and value and not isinstance(value[0], (list, dict)):
        fast = _fast_flat(value, dtype)
        if fast is not None:
            return fast
    shape = _dense_shape(value)
    out: list[Any] = []
    _fill(value, 0, shape, dtype, out)
    return _to_array(out, shape, dtype)


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _instances(items: list[Any], input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """`FillTensorMapFromInstancesList`: a list of per-example values or objects."""
    if not isinstance(items[0], dict) and len(input_dtypes) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    objects = isinstance(items[0], dict) and not is_b64(items[0])
    names = sorted(input_dtypes)
    columns: dict[str, list[Any]] = {}
    if objects:
        for index, item in enumerate(items):
            if not (isinstance(item, dict) and not is_b64(item)):
                raise invalid(f"Expecting object but got list at item {index} of input list")
            if sorted(item) != names:
                unknown = [k for k in item if k not in input_dtypes]
                if unknown:
                    raise invalid(
                        f"Failed to process element: {index} key: {unknown[0]} of 'instances' list. "
                        f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {unknown[0]}"
                    )
                raise invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{value_to_string(item)} keys must be equal to: {','.join(names)}"
                )
            for key, value in item.items():
                columns.setdefault(key, []).append(value)
    else:
        for index, item in enumerate(items):
            if isinstance(item, dict) and not is_b64(item):
                raise invalid(f"Expecting value/list but got object at item {index} of input list")
        columns[names[0]] = items
    out = {}
    for name, values in columns.items():
        try:
            out[name] = json_to_array(values, input_dtypes[name])
        except ServingError:
            _explain_instances(name, values, input_dtypes[name], objects)
            raise
    return out


def _explain_instances(name: str, values: list[Any], dtype: int, objects: bool) -> None:
    """Re-walk instance by instance to raise TF Serving's per-element message."""
    first_shape: list[int] | None = None
    first_size = 0
    for index, value in enumerate(values):
        try:
            shape = _dense_shape(value)
            leaves: list[Any] = []
            _fill(value, 0, shape, dtype, leaves)
            if first_shape is None:
                first_shape, first_size = shape, len(leaves)
            elif len(leaves) != first_size:
                raise invalid(f"Expecting tensor size: {first_size} but got: {len(leaves)}")
            elif shape != first_shape:
                raise invalid(f"Expecting shape {_shape_text(first_shape)} but got: {_shape_text(shape)}")
        except ServingError as err:
            where = f"{index} key: {name}" if objects else f"{index}"
            raise ServingError(
                err.code,
                f"Failed to process element: {where} of 'instances' list. Error: {err.code.name}: {err.message}",
            ) from None


def _columns(value: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """`FillTensorMapFromInputsMap`: one value, or an object of named values."""
    if not isinstance(value, dict) or is_b64(value):
        if len(input_dtypes) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        name = next(iter(input_dtypes))
        return {name: json_to_array(value, input_dtypes[name])}
    out = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        out[name] = json_to_array(value[name], input_dtypes[name])
    return out


def predict_inputs(
    doc: dict[str, Any], input_dtypes: Mapping[str, int], signature: str
) -> tuple[dict[str, np.ndarray], str]:
    """Tensors of a predict request and its format (ROW for "instances", COLUMNAR for "inputs").

    Args:
        doc: the parsed request object.
        input_dtypes: the signature's inputs, alias -> TF DataType enum.
        signature: the signature name as requested ("" for the default), for messages.
    """
    if not input_dtypes:
        raise invalid(f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    if "instances" in doc:
        if "inputs" in doc:
            raise invalid(
                f"JSON Value: {value_to_string(doc)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist "
            )
        items = doc["instances"]
        if not isinstance(items, list):
            raise invalid(f"JSON Value: {value_to_string(doc)} Excepting 'instances' to be an list/array")
        if not items:
            raise invalid(f"JSON Value: {value_to_string(doc)} No values in 'instances' array")
        return _instances(items, input_dtypes), ROW
    if "inputs" in doc:
        return _columns(doc["inputs"], input_dtypes), COLUMNAR
    raise invalid("Missing 'inputs' or 'instances' key")

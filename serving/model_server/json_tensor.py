"""TF Serving's REST JSON <-> tensors: row/columnar predict requests, examples, responses.

Follows `tensorflow_serving/util/json_tensor.cc` rule by rule and message by message; the
common cases (flat lists of one JSON type) take vectorised fast paths, and anything unusual
falls back to the element-by-element walk that produces TF Serving's exact error text.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2 as DT

from serving.model_server.errors import ServingError
from serving.model_server.json_text import (
    INDENT,
    decimal_text,
    encode_text,
    json_string,
    json_type_name,
    parse_error_message,
    value_to_string,
)
from serving.model_server.tensors import dtype_name, numpy_dtype

ROW = "row"
COLUMNAR = "columnar"

_FLOAT_MAX = float(np.finfo(np.float32).max)
_DOUBLE_MAX = float(np.finfo(np.float64).max)
_INT_RANGES = {  # rapidjson IsInt / IsInt64 / IsUint / IsUint64
    DT.DT_INT32: (-(2**31), 2**31 - 1),
    DT.DT_INT16: (-(2**31), 2**31 - 1),
    DT.DT_INT8: (-(2**31), 2**31 - 1),
    DT.DT_UINT8: (-(2**31), 2**31 - 1),
    DT.DT_INT64: (-(2**63), 2**63 - 1),
    DT.DT_UINT32: (0, 2**32 - 1),
    DT.DT_UINT64: (0, 2**64 - 1),
}


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a request body; TF Serving's errors for empty, malformed or non-object JSON."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid(parse_error_message(exc)) from None
    except RecursionError:
        raise _invalid("JSON Parse error: Terminate parsing due to Handler error. at offset: 0") from None
    if not isinstance(doc, dict):
        raise _invalid(f"JSON Value: {value_to_string(doc)} Is not object")
    return doc


def signature_name(doc: dict[str, Any]) -> str:
    """The optional "signature_name" of a request ("" when absent)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise _invalid(
            f"JSON Value: {value_to_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


# ----------------------------------------------------------------------------- values
def _lossy(value: Any, target: str) -> ServingError:
    return _invalid(
        f"Cannot convert JSON value: {value_to_string(value)} to {target} without loss of precision."
    )


def _type_error(value: Any, dtype: int) -> ServingError:
    return _invalid(
        f"JSON Value: {value_to_string(value)} Type: {json_type_name(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_b64(value: Any) -> bytes:
    if not _is_b64(value):
        raise _invalid(f"JSON Value: {value_to_string(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Unable to base64 decode") from None


def _lossless(value: int | float, bits: int, max_value: float) -> bool:
    """rapidjson-based IsLosslessDecimal: ints within 2^bits-1, doubles within range."""
    if isinstance(value, int) and abs(value) < 2**64:
        return abs(value) <= (1 << bits) - 1
    value = float(value)
    return not np.isfinite(value) or -max_value <= value <= max_value


def _convert_scalar(value: Any, dtype: int) -> Any:
    """One leaf value -> a Python value for the tensor (`AddValueToTensor`)."""
    if isinstance(value, dict):
        if dtype == DT.DT_STRING:
            return _decode_b64(value)
        raise _type_error(value, dtype)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in (DT.DT_FLOAT, DT.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        if dtype == DT.DT_FLOAT and not _lossless(value, 24, _FLOAT_MAX):
            raise _lossy(value, "float")
        if dtype == DT.DT_DOUBLE and not _lossless(value, 53, _DOUBLE_MAX):
            raise _lossy(value, "double")
        return float(value)
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
    """`GetDenseTensorShape`: sizes of the first element at each nesting level."""
    shape = []
    while isinstance(value, list):
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
            raise _invalid(
                f"JSON Value: {value_to_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        out.append(_convert_scalar(value, dtype))
        return
    if level >= rank:
        raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise _invalid(
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
        if int in kinds:
            bits = 24 if dtype == DT.DT_FLOAT else 53
            if any(abs(v) > (1 << bits) - 1 for v in values if type(v) is int):
                return None
        if dtype == DT.DT_FLOAT:
            finite = array[np.isfinite(array)]
            if finite.size and np.abs(finite).max() > _FLOAT_MAX:
                return None
            return array.astype(np.float32)
        return array
    if dtype in _INT_RANGES and kinds == {int}:
        low, high = _INT_RANGES[dtype]
        if min(values) < low or max(values) > high:
            return None
        wide = np.array(values, dtype=np.uint64 if dtype == DT.DT_UINT64 else np.int64)
        return wide.astype(numpy_dtype(dtype))
    if dtype == DT.DT_STRING and kinds == {str}:
        out = np.empty(len(values), dtype=object)
        out[:] = [v.encode("utf-8") for v in values]
        return out
    if dtype == DT.DT_BOOL and kinds == {bool}:
        return np.array(values, dtype=np.bool_)
    return None


def _to_array(values: list[Any], shape: list[int], dtype: int) -> np.ndarray:
    np_dtype = numpy_dtype(dtype)
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
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    objects = isinstance(items[0], dict) and not _is_b64(items[0])
    names = sorted(input_dtypes)
    columns: dict[str, list[Any]] = {}
    if objects:
        for index, item in enumerate(items):
            if not (isinstance(item, dict) and not _is_b64(item)):
                raise _invalid(f"Expecting object but got list at item {index} of input list")
            if sorted(item) != names:
                unknown = [k for k in item if k not in input_dtypes]
                if unknown:
                    raise _invalid(
                        f"Failed to process element: {index} key: {unknown[0]} of 'instances' list. "
                        f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {unknown[0]}"
                    )
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{value_to_string(item)} keys must be equal to: {','.join(names)}"
                )
            for key, value in item.items():
                columns.setdefault(key, []).append(value)
    else:
        for index, item in enumerate(items):
            if isinstance(item, dict) and not _is_b64(item):
                raise _invalid(f"Expecting value/list but got object at item {index} of input list")
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
                raise _invalid(f"Expecting tensor size: {first_size} but got: {len(leaves)}")
            elif shape != first_shape:
                raise _invalid(f"Expecting shape {_shape_text(first_shape)} but got: {_shape_text(shape)}")
        except ServingError as err:
            where = f"{index} key: {name}" if objects else f"{index}"
            raise ServingError(
                err.code,
                f"Failed to process element: {where} of 'instances' list. Error: {err.code.name}: {err.message}",
            ) from None


def _columns(value: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """`FillTensorMapFromInputsMap`: one value, or an object of named values."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_dtypes) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        name = next(iter(input_dtypes))
        return {name: json_to_array(value, input_dtypes[name])}
    out = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
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
        raise _invalid(f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    if "instances" in doc:
        if "inputs" in doc:
            raise _invalid(
                f"JSON Value: {value_to_string(doc)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist "
            )
        items = doc["instances"]
        if not isinstance(items, list):
            raise _invalid(f"JSON Value: {value_to_string(doc)} Excepting 'instances' to be an list/array")
        if not items:
            raise _invalid(f"JSON Value: {value_to_string(doc)} No values in 'instances' array")
        return _instances(items, input_dtypes), ROW
    if "inputs" in doc:
        return _columns(doc["inputs"], input_dtypes), COLUMNAR
    raise _invalid("Missing 'inputs' or 'instances' key")


# ----------------------------------------------------------------------------- examples
def _feature_kind_error(name: str, feature: feature_pb2.Feature) -> ServingError:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind") or "", "UNKNOWN"
    )
    return _invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_feature_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """`AddValueToFeature`: JSON scalar -> int64/float/bytes list entry."""
    kind = feature.WhichOneof("kind")

    def need(wanted: str) -> None:
        if kind is not None and kind != wanted:
            raise _feature_kind_error(name, feature)

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise _invalid(f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}")
    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        need("bytes_list")
        feature.bytes_list.value.append(_decode_b64(value))
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float) or abs(value) >= 2**64:
        need("float_list")
        if not _lossless(float(value), 24, _FLOAT_MAX):
            raise _lossy(value, "float")
        feature.float_list.value.append(float(value))
    else:
        need("int64_list")
        if value >= 2**63:
            raise _invalid(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)


def json_to_example(value: Any) -> example_pb2.Example:
    """`MakeExampleFromJsonObject`: {"feature": value or [values]} -> tf.Example."""
    if not isinstance(value, dict):
        raise _invalid(f"Example must be JSON object but got JSON {json_type_name(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def examples_request(doc: dict[str, Any], input_proto: Any) -> None:
    """Fill a classify/regress `Input` proto from "context" and "examples" (TF Serving's rules)."""
    context = None
    if "context" in doc:
        context = json_to_example(doc["context"])
    if "examples" not in doc:
        raise _invalid(
            f"JSON Value: {value_to_string(doc)} When method is classify, key 'examples' is expected "
            "and was not found"
        )
    items = doc["examples"]
    if not isinstance(items, list):
        raise _invalid(f"JSON Value: {value_to_string(doc)} Expecting 'examples' value to be an list/array")
    if not items:
        raise _invalid(f"JSON Value: {value_to_string(doc)} 'examples' value is an empty array")
    if context is not None:
        target = input_proto.example_list_with_context
        target.context.CopyFrom(context)
    else:
        target = input_proto.example_list
    for item in items:
        target.examples.append(json_to_example(item))


# ----------------------------------------------------------------------------- responses
def _leaf_texts(array: np.ndarray, name: str) -> list[str]:
    """Every element of `array` (flattened) as TF Serving's JSON writer prints it."""
    flat = array.reshape(-1)
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize <= 4:  # float32 and half: WriteDecimal<float>
        values = flat.astype(np.float32)
        if not np.isfinite(values).all():
            return [decimal_text(v) for v in values.tolist()]
        fast = [format(v, "g") for v in values.tolist()]
        same = (np.array(fast, dtype=np.float64).astype(np.float32) == values).tolist()
        out = []
        for text, value, ok in zip(fast, values.tolist(), same, strict=True):
            if not ok:
                text = format(value, ".9g")
            if "." not in text and "e" not in text:
                text += ".0"
            out.append(text)
        return out
    if array.dtype == np.float64:
        return [decimal_text(v, double=True) for v in flat.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "iu":
        return [str(v) for v in flat.tolist()]
    if kind in "OSU":
        if name.endswith("_bytes"):
            return [_B64 + json_string(base64.b64encode(_as_bytes(v)).decode("ascii")) for v in flat.tolist()]
        return [json_string(_as_bytes(v)) for v in flat.tolist()]
    raise _invalid(f"Failed to write JSON value for tensor type: {array.dtype.name}")


# Marks a leaf to be written as a {"b64": ...} object; its layout depends on its depth.
_B64 = "\x00b64:"


def _leaf(text: str, depth: int) -> str:
    """A leaf value with `depth` open containers around it (objects always break lines)."""
    if not text.startswith(_B64):
        return text
    return "{\n" + INDENT * (depth + 1) + '"b64": ' + text[len(_B64) :] + "\n" + INDENT * depth + "}"


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _nest_single_line(texts: list[str], shape: tuple[int, ...], depth: int) -> str:
    """Nested lists on one line, rapidjson kFormatSingleLineArray style: [a, b]."""
    if not shape:
        return _leaf(texts[0], depth)
    if len(shape) == 1:
        return "[" + ", ".join(_leaf(t, depth + 1) for t in texts) + "]"
    step = len(texts) // shape[0] if shape[0] else 0
    parts = (
        _nest_single_line(texts[i * step : (i + 1) * step], shape[1:], depth + 1) for i in range(shape[0])
    )
    return "[" + ", ".join(parts) + "]"


def _nest_pretty(texts: list[str], shape: tuple[int, ...], depth: int) -> str:
    """Nested lists in rapidjson's default pretty format: one element per line."""
    if not shape:
        return _leaf(texts[0], depth)
    if shape[0] == 0:
        return "[]"
    inner = "\n" + INDENT * (depth + 1)
    if len(shape) == 1:
        leaves = [_leaf(t, depth + 1) for t in texts] if texts and texts[0].startswith(_B64) else texts
        return "[" + inner + ("," + inner).join(leaves) + "\n" + INDENT * depth + "]"
    step = len(texts) // shape[0]
    parts = [_nest_pretty(texts[i * step : (i + 1) * step], shape[1:], depth + 1) for i in range(shape[0])]
    return "[" + inner + ("," + inner).join(parts) + "\n" + INDENT * depth + "]"


def predict_response_json(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """`MakeJsonFromTensors`: {"predictions": [...]} (ROW) or {"outputs": ...} (COLUMNAR)."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {n: np.asarray(outputs[n]) for n in names}
    texts = {n: _leaf_texts(arrays[n], n) for n in names}
    if fmt == COLUMNAR:
        if len(names) == 1:
            body = _nest_pretty(texts[names[0]], arrays[names[0]].shape, 1)
        else:
            inner = "\n" + INDENT * 2
            members = [json_string(n) + ": " + _nest_pretty(texts[n], arrays[n].shape, 2) for n in names]
            body = "{" + inner + ("," + inner).join(members) + "\n" + INDENT + "}"
        return encode_text("{\n" + INDENT + '"outputs": ' + body + "\n}")
    batch = -1
    for name in names:
        shape = arrays[name].shape
        if not shape:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and shape[0] != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}")
        batch = shape[0]
    rows: list[str] = []
    per_item = {}
    for name in names:
        shape = arrays[name].shape
        step = len(texts[name]) // batch if batch else 0
        per_item[name] = (step, shape[1:])
    for i in range(batch):
        items = {}
        for name in names:
            step, item_shape = per_item[name]
            item_depth = 2 if len(names) == 1 else 3
            items[name] = _nest_single_line(texts[name][i * step : (i + 1) * step], item_shape, item_depth)
        if len(names) == 1:
            rows.append(items[names[0]])
        else:
            inner = "\n" + INDENT * 3
            members = ("," + inner).join(json_string(n) + ": " + items[n] for n in names)
            rows.append("{" + inner + members + "\n" + INDENT * 2 + "}")
    if not rows:
        body = "[]"
    elif len(names) == 1:
        body = "[" + ", ".join(rows) + "\n" + INDENT + "]"
    else:
        inner = "\n" + INDENT * 2
        body = "[" + inner + ("," + inner).join(rows) + "\n" + INDENT + "]"
    return encode_text("{\n" + INDENT + '"predictions": ' + body + "\n}")


def classification_json(result: Any) -> bytes:
    """`MakeJsonFromClassificationResult`: {"results": [[[label, score], ...], ...]}."""
    if not result.classifications:
        raise _invalid("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classifications in result.classifications:
        pairs = ", ".join(
            f"[{json_string(c.label)}, {decimal_text(c.score)}]" for c in classifications.classes
        )
        rows.append("[" + pairs + "]")
    return encode_text("{\n" + INDENT + '"results": [' + ", ".join(rows) + "\n" + INDENT + "]\n}")


def regression_json(result: Any) -> bytes:
    """`MakeJsonFromRegressionResult`: {"results": [v, ...]}."""
    if not result.regressions:
        raise _invalid("Cannot convert empty RegressionResults to JSON")
    values = ", ".join(decimal_text(r.value) for r in result.regressions)
    return encode_text("{\n" + INDENT + '"results": [' + values + "]\n}")

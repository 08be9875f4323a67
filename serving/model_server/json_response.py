"""Tensors and classify/regress results -> TF Serving's REST response JSON, byte for byte."""

# `MakeJsonFromTensors` / `MakeJsonFromClassificationResult` / `MakeJsonFromRegressionResult`
# in `tensorflow_serving/util/json_tensor.cc`: rapidjson's PrettyWriter layout (row items on
# one line, columnar values one per line), `WriteDecimal` floats, "_bytes" outputs as b64.

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.model_server.json_tensor import COLUMNAR, invalid
from serving.model_server.json_text import INDENT, decimal_text, encode_text, json_string


def _leaf_texts(array: np.ndarray, name: str) -> list[str]:
    """Every element of `array` (flattened) as TF Serving's JSON writer prints it."""
    flat = array.reshape(-1)
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize <= 4:  # float32 and half: WriteDecimal<float>
        values = flat.astype(np.float32)
        if not np.isfinite(values).all():
            return [decimal_text(v) for v in values.tolist()]
        return _float_texts(values)
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
    raise invalid(f"Failed to write JSON value for tensor type: {array.dtype.name}")


def _float_texts(values: np.ndarray) -> list[str]:
    """``decimal_text`` of every finite float32 in ``values``, with one formatting call per pass.

    ``"%g"`` (6 digits) where it reads back as the same float32, else ``"%.9g"``; ".0" after a
    whole number that printed without an exponent (``%g`` switches to one from 1e6, ``%.9g``
    from 1e9). Formatting all values with one ``%`` on a repeated template runs the loop in C.
    """
    n = len(values)
    if n == 0:
        return []
    v64 = values.astype(np.float64)
    texts = (("%g\x00" * n) % tuple(v64.tolist())).split("\x00")[:-1]
    redo = np.flatnonzero(np.array(texts, dtype=np.float64).astype(np.float32) != values)
    if len(redo):
        long = (("%.9g\x00" * len(redo)) % tuple(v64[redo].tolist())).split("\x00")[:-1]
        for i, text in zip(redo.tolist(), long, strict=True):
            texts[i] = text
    limit = np.full(n, 1e6)
    limit[redo] = 1e9
    for i in np.flatnonzero((np.floor(v64) == v64) & (np.abs(v64) < limit)).tolist():
        texts[i] += ".0"
    return texts


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
        raise invalid("Cannot convert empty tensor map to JSON")
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
            raise invalid(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and shape[0] != batch:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}")
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
        raise invalid("Cannot convert empty ClassificationResults to JSON")
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
        raise invalid("Cannot convert empty RegressionResults to JSON")
    values = ", ".join(decimal_text(r.value) for r in result.regressions)
    return encode_text("{\n" + INDENT + '"results": [' + values + "]\n}")

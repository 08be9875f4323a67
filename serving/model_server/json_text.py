"""JSON text exactly as TF Serving's rapidjson writers print it (numbers, strings, layout)."""

# TF Serving answers with rapidjson's `PrettyWriter` (4-space indent) and writes floats as
# `absl::StrCat` text with a round-trip fallback (`util/json_tensor.cc`, `WriteDecimal`); its
# error messages embed request values (json_debug.py, `JsonValueToDebugString`). Clients
# that compare bytes or parse float text see the same thing from this server.

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import numpy as np

INDENT = "    "

_LOWER_HEX_ESCAPE = re.compile(r"\\u00([0-9a-f]{2})")


def json_string(value: str | bytes) -> str:
    """A JSON string literal as rapidjson writes it (UTF-8 kept, upper-case \\u00XX escapes).

    Bytes that are not valid UTF-8 are carried through unchanged (rapidjson does not validate
    by default); they come back out when the text is encoded with `encode_text`.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    text = json.dumps(value, ensure_ascii=False)
    if "\\u00" in text:
        text = _LOWER_HEX_ESCAPE.sub(lambda m: "\\u00" + m.group(1).upper(), text)
    return text


def encode_text(text: str) -> bytes:
    """Encode response text to bytes, restoring raw non-UTF-8 bytes from `json_string`."""
    return text.encode("utf-8", "surrogateescape")


def decimal_text(value: float, *, double: bool = False) -> str:
    """Format a float like TF Serving's `WriteDecimal` (float32 unless `double`).

    Six significant digits (`%g`) when they round-trip, else 9 (float) / 17 (double) digits;
    ".0" appended to whole numbers; NaN / Infinity / -Infinity for non-finite values.
    """
    if not double:
        value = float(np.float32(value))
    if math.isfinite(value):
        text = format(value, "g")
        if double:
            if float(text) != value:
                text = format(value, ".17g")
        elif np.float32(float(text)) != np.float32(value):
            text = format(value, ".9g")
        if "." not in text and "e" not in text:
            text += ".0"
        return text
    if math.isnan(value):
        return "NaN"
    return "-Infinity" if value < 0 else "Infinity"


def rapidjson_double(value: float) -> str:
    """rapidjson `Writer::Double` text (shortest digits, its own exponent rules)."""
    if not math.isfinite(value):
        return decimal_text(value, double=True)
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    length = len(text)
    kk = length + exp  # 10^(kk-1) <= |v| < 10^kk
    if 0 <= exp and kk <= 21:
        body = text + "0" * exp + ".0"
    elif 0 < kk <= 21:
        body = text[:kk] + "." + text[kk:]
    elif -6 < kk <= 0:
        body = "0." + "0" * -kk + text
    elif length == 1:
        body = f"{text}e{kk - 1}"
    else:
        body = f"{text[0]}.{text[1:]}e{kk - 1}"
    return ("-" if sign else "") + body


def json_type_name(value: Any) -> str:
    """TF Serving's `JsonTypeString` names of JSON value types."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def error_body(message: str) -> bytes:
    """TF Serving's REST error body (`MakeJsonFromStatus`).

    Never fails: a message holding a lone surrogate (which no UTF-8 text can carry) is written
    with ASCII escapes instead, still valid JSON.
    """
    try:
        return encode_text("{\n" + INDENT + '"error": ' + json_string(message) + "\n}")
    except UnicodeEncodeError:
        return ("{\n" + INDENT + '"error": ' + json.dumps(message) + "\n}").encode("ascii")


# rapidjson's English parse-error texts for the situations Python's decoder reports.
_PARSE_MESSAGES = {
    "Expecting value": "Invalid value.",
    "Extra data": "The document root must not be followed by other values.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
    "Unexpected UTF-8 BOM (decode using utf-8-sig)": "Invalid value.",
}


def _innermost_container(text: str, pos: int) -> str:
    """'[' or '{': the container open at `pos`, to tell rapidjson's two comma errors apart."""
    stack = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else "{"


def parse_error_message(exc: json.JSONDecodeError, *, offset: int | None = None) -> str:
    """Turn a Python JSON decode error into TF Serving's "JSON Parse error: ..." text.

    ``offset`` is the error's byte offset (rapidjson's), when the text is not all ASCII.
    """
    if exc.msg == "Expecting ',' delimiter":
        if _innermost_container(exc.doc, exc.pos) == "[":
            text = "Missing a comma or ']' after an array element."
        else:
            text = "Missing a comma or '}' after an object member."
    else:
        text = _PARSE_MESSAGES.get(exc.msg, exc.msg + ".")
    return f"JSON Parse error: {text} at offset: {exc.pos if offset is None else offset}"

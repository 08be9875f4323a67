"""REST request bodies -> JSON values, as rapidjson parses them in TF Serving 2.21.

TF Serving parses with ``kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag``
(json_tensor.cc): NaN and Infinity literals are numbers; integers outside
[-2**63, 2**64) become doubles; a number beyond a double's range is "Number too big to be
stored in double."; a lone UTF-16 surrogate escape is "The surrogate pair in string is
invalid."; offsets are byte offsets.

Two routes give that result:

* **orjson** (the fast path, ~70 us for a 47 KB body where ``json.loads`` takes ~250 us) parses
  every valid body the way rapidjson does, apart from NaN/Infinity, which it refuses. It also
  refuses everything rapidjson refuses, so any orjson error sends the body to
* **the careful path**: the standard library's parser, whose errors we already translate into
  rapidjson's texts (``json_text.parse_error_message``), plus a scan for the two mistakes it
  would let through (overflowing numbers, lone surrogates). Whichever problem comes first in
  the document is reported, as rapidjson stops at the first.

Nesting is the one limit of ours: rapidjson's iterative parser has none, orjson stops at 1,024
levels and the careful path at CAREFUL_MAX_DEPTH (it recurses; Python's limit is ~1,000). No
valid request nests deeper than a tensor's rank (at most 64 here) plus three levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import orjson

from serving.model_server.errors import ServingError
from serving.model_server.json_text import parse_error_message

FAST_MAX_DEPTH = 1024  # orjson's own limit
CAREFUL_MAX_DEPTH = 900  # below Python's recursion limit, with room for the calling frames

_INT64_MIN = -(2**63)
_UINT64_END = 2**64

# Strings (group 1: the body between the quotes) and number-like runs outside strings.
_TOKENS = re.compile(r'"((?:[^"\\]|\\.)*)"|(-?[0-9][0-9.eE+-]*)', re.S)
_ESCAPES = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SUSPICIOUS_NUMBER = re.compile(r"[0-9]{20}|[eE][+-]?[0-9]{3}")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def _invalid(message: str) -> ServingError:
    return ServingError.invalid_argument(message)


def parse_body(body: bytes) -> Any:
    """Parse a REST body; INVALID_ARGUMENT with rapidjson's text and byte offset on any error."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _parse_careful(body)


def _byte_offset(text: str, pos: int) -> int:
    return len(text[:pos].encode("utf-8", "surrogatepass"))


def _parse_careful(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}") from None
    first_bad = _first_bad_token(text)
    too_deep = _depth_exceeded(body, CAREFUL_MAX_DEPTH)
    if too_deep is not None and (first_bad is None or too_deep < _byte_offset(text, first_bad[0])):
        raise _depth_error(too_deep, CAREFUL_MAX_DEPTH)
    try:
        doc = json.loads(text, parse_int=_rapidjson_int)
    except json.JSONDecodeError as exc:
        if first_bad is not None and first_bad[0] <= exc.pos:
            raise _bad_token_error(text, first_bad) from None
        raise _invalid(parse_error_message(exc, offset=_byte_offset(text, exc.pos))) from None
    except RecursionError:  # only with deep frames around us: the depth check comes first
        raise _depth_error(0, CAREFUL_MAX_DEPTH) from None
    if first_bad is not None:
        raise _bad_token_error(text, first_bad)
    return doc


def _rapidjson_int(text: str) -> int | float:
    """Integers rapidjson keeps as integers stay ints; the others become doubles (maybe inf,
    which the token scan has already reported)."""
    if len(text) <= 19:
        return int(text)
    if len(text) <= 21:
        value = int(text)
        if _INT64_MIN <= value < _UINT64_END:
            return value
    return float(text)


def _first_bad_token(text: str) -> tuple[int, str] | None:
    """(char position, rapidjson message) of the first number too big for a double or lone
    surrogate escape, outside the parts the standard parser reports itself; None if neither."""
    if "\\u" not in text and _SUSPICIOUS_NUMBER.search(text) is None:
        return None
    for match in _TOKENS.finditer(text):
        string, number = match.group(1), match.group(2)
        if string is not None:
            if "\\u" in string:
                at = _bad_surrogate(string)
                if at is not None:
                    return match.start(1) + at, "The surrogate pair in string is invalid."
        elif _overflows(number):
            return match.start(2), "Number too big to be stored in double."
    return None


def _bad_surrogate(string: str) -> int | None:
    """Position (of the backslash, rapidjson's escapeOffset) of the first invalid surrogate."""
    pending: int | None = None  # a high surrogate's position, waiting for its low half
    expected_at = -1
    for escape in _ESCAPES.finditer(string):
        hexa = escape.group(1)
        code = int(hexa, 16) if hexa is not None else -1
        if pending is not None:
            if escape.start() != expected_at or not 0xDC00 <= code <= 0xDFFF:
                return pending
            pending = None
            continue
        if 0xD800 <= code <= 0xDBFF:
            pending, expected_at = escape.start(), escape.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return escape.start()
    return pending


def _overflows(number: str) -> bool:
    """rapidjson's kParseErrorNumberTooBig: the value is beyond a double.

    (rapidjson also refuses a zero with an exponent over 308, "0e400"; orjson reads 0.0, and so
    does this, so that both paths agree: a documented difference.)
    """
    match = _NUMBER.match(number)
    if match is None:
        return False  # malformed: the standard parser reports it where it starts
    try:
        return not np.isfinite(float(match.group(0)))
    except (ValueError, OverflowError):
        return False


def _bad_token_error(text: str, bad: tuple[int, str]) -> ServingError:
    pos, message = bad
    return _invalid(f"JSON Parse error: {message} at offset: {_byte_offset(text, pos)}")


def _depth_exceeded(body: bytes, limit: int) -> int | None:
    """Byte offset of the bracket that opens level ``limit + 1``, or None; brackets inside
    strings do not count. Cheap unless the body holds more than ``limit`` opening brackets."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return None
    blanked = _STRINGS.sub(lambda m: b'"' + b" " * (len(m.group(0)) - 2) + b'"', body)
    codes = np.frombuffer(blanked, dtype=np.uint8)
    step = np.zeros(len(codes), dtype=np.int32)
    step[(codes == ord("[")) | (codes == ord("{"))] = 1
    step[(codes == ord("]")) | (codes == ord("}"))] = -1
    over = np.flatnonzero(np.cumsum(step) > limit)
    return int(over[0]) if over.size else None


def _depth_error(offset: int, limit: int) -> ServingError:
    return _invalid(
        f"JSON Parse error: Arrays and objects nested deeper than {limit} levels "
        f"(a limit of this server; TF Serving has none). at offset: {offset}"
    )

"""Request values quoted in error messages, bounded as TF Serving's JsonValueToDebugString bounds them."""

# Until 2024 TF Serving quoted whole request values in its errors, indented (a 400 KB body gave
# a 49.6 MB error here). Since 6cb01316 json_tensor.cc writes them with rapidjson's PrettyWriter
# (4-space indent, kFormatSingleLineArray) through JsonWriterWithLimit, which refuses every
# event that starts once 256 bytes are written (kMaxJsonDebugStringBytes), and rapidjson's
# Writer refuses NaN and infinities (no kWriteNanAndInfFlag): the text stops there. This is
# that writer, iterative, so no nesting depth can make it recurse.
#
# One event may still be long (a long string or key is written whole), so every quote of the
# input, JSON or not (`excerpt`), is also cut at MAX_QUOTE_CHARS: an error costs a few hundred
# bytes of text whatever the request.

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from serving.model_server.json_text import INDENT, json_string, rapidjson_double

MAX_DEBUG_STRING_BYTES = 256  # json_tensor.cc kMaxJsonDebugStringBytes
MAX_QUOTE_CHARS = 512  # ours: the longest quote of the input in any error message

_INT64_MIN = -(2**63)
_UINT64_END = 2**64


def excerpt(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """``text`` cut to ``limit`` characters: a name, path or version quoted from a request."""
    return text if len(text) <= limit else text[:limit] + "..."


def _number_text(value: int | float) -> str | None:
    """rapidjson's number text: integers as parsed (int64/uint64), others as doubles; None for
    NaN and infinities, which its Writer refuses."""
    if isinstance(value, int) and _INT64_MIN <= value < _UINT64_END:
        return str(value)
    try:
        number = float(value)
    except OverflowError:  # rapidjson never parses such a number (too big for a double)
        return None
    return rapidjson_double(number) if math.isfinite(number) else None


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _number_text(value)
    return json_string(value)


class _LimitedWriter:
    """rapidjson's PrettyWriter (kFormatSingleLineArray) behind JsonWriterWithLimit."""

    def __init__(self, max_bytes: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.levels: list[list[Any]] = []  # [in_array, value_count] per open container

    def _put(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text.encode("utf-8", "surrogatepass"))

    def _prefix(self) -> None:
        """PrettyPrefix: the separator, newline and indent before a value or key."""
        if not self.levels:
            return
        level = self.levels[-1]
        in_array, count = level
        if in_array:
            if count:
                self._put(", ")
        else:
            if count:
                self._put(",\n" if count % 2 == 0 else ": ")
            else:
                self._put("\n")
            if count % 2 == 0:
                self._put(INDENT * len(self.levels))
        level[1] = count + 1

    def value(self, value: Any, stack: list[tuple[bool, Iterator[Any]]]) -> bool:
        """One value's first event (a scalar, or a container's start); False stops the writing."""
        if self.size >= self.max_bytes:
            return False
        self._prefix()
        if isinstance(value, dict):
            self.levels.append([False, 0])
            self._put("{")
            stack.append((True, iter(value.items())))
            return True
        if isinstance(value, list):
            self.levels.append([True, 0])
            self._put("[")
            stack.append((False, iter(value)))
            return True
        text = _scalar_text(value)
        if text is None:
            return False
        self._put(text)
        return True

    def key(self, name: str) -> bool:
        if self.size >= self.max_bytes:
            return False
        self._prefix()
        self._put(json_string(name))
        return True

    def end(self, is_object: bool) -> bool:
        if self.size >= self.max_bytes:
            return False
        _, count = self.levels.pop()
        if is_object:
            if count:
                self._put("\n" + INDENT * len(self.levels))
            self._put("}")
        else:
            self._put("]")
        return True


def value_to_string(value: Any, max_bytes: int = MAX_DEBUG_STRING_BYTES) -> str:
    """TF Serving's ``JsonValueToDebugString``: a parsed JSON value as error messages quote it.

    Written as rapidjson's PrettyWriter writes it with single-line arrays, stopping at the first
    event that would start past ``max_bytes`` (the text may then end mid-way, as TF's does) or
    at a NaN or infinity, and cut at MAX_QUOTE_CHARS.
    """
    writer = _LimitedWriter(max_bytes)
    stack: list[tuple[bool, Iterator[Any]]] = []
    going = writer.value(value, stack)
    while going and stack:
        is_object, items = stack[-1]
        item: Any = next(items, _END)
        if item is _END:
            stack.pop()
            going = writer.end(is_object)
        elif is_object:
            going = writer.key(item[0]) and writer.value(item[1], stack)
        else:
            going = writer.value(item, stack)
    return excerpt("".join(writer.parts))


_END = object()

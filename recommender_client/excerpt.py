"""Bounded, always-encodable quotes of client or file input for error messages and logs."""

from __future__ import annotations

import reprlib
from typing import Any

# A few hundred characters name the offending value; echoing more only amplifies a hostile request
# (a 400 KB body once produced a 49.6 MB error body).
EXCERPT_CHARS = 200
# repr() of an int with more than 4,300 digits raises (Python's int-to-str limit), and a 10**300
# quoted in full tells the reader nothing more than its size does.
MAX_INT_BITS = 128


class _BoundedRepr(reprlib.Repr):
    """reprlib.Repr that never calls repr() on a huge int (it would raise ValueError)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > MAX_INT_BITS:
            return f"<int of {x.bit_length()} bits>"
        return repr(x)


def _bounded_repr() -> _BoundedRepr:
    shape = _BoundedRepr()  # Python 3.11's Repr takes no keyword arguments
    shape.maxlevel = 3
    shape.maxtuple = shape.maxlist = shape.maxarray = shape.maxdict = shape.maxset = 6
    shape.maxstring = shape.maxother = 80
    return shape


_REPR = _bounded_repr()


def utf8_safe(text: str) -> str:
    """``text`` with lone surrogates spelled as ``\\udXXX`` escapes, so it encodes as UTF-8.

    JSON lets a client write ``"\\ud800"``; Python decodes it to a str that cannot be encoded,
    and an error body quoting it would then fail with a 500 of its own.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A repr of ``value`` of at most about ``limit`` characters that always encodes as UTF-8.

    Containers show their first few members (``reprlib``), strings their first ``limit``
    characters and their length, ints beyond 128 bits only their size.
    """
    if isinstance(value, str):
        shown = repr(value[:limit])
        if len(value) > limit:
            shown += f"... ({len(value)} characters)"
        return utf8_safe(shown)
    shown = utf8_safe(_REPR.repr(value))
    return shown if len(shown) <= limit else shown[:limit] + "..."


def clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A message (not a value: no quotes) cut to ``limit`` characters, encodable as UTF-8."""
    return utf8_safe(text if len(text) <= limit else text[:limit] + "...")

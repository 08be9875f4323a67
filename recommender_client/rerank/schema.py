"""The rules file's field schema: one check per field type, each returning what is wrong or None."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from recommender_client.excerpt import excerpt

Check = Callable[[Any], str | None]


def _finite(v: Any) -> bool:
    """Whether a YAML number is a finite float (``.inf``, ``.nan`` and 10**400 are not).

    An infinite multiplier turns every score into inf or NaN, and an int too large for a
    float raises OverflowError when a request multiplies by it: both must fail the reload.
    """
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _num(positive: bool = False, below_one: bool = False, above_one: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number, got {excerpt(v)}"
        if not _finite(v):
            return f"must be a finite number, got {excerpt(v)}"
        if positive and not v > 0:
            return f"must be > 0, got {excerpt(v)}"
        if below_one and not 0 < v < 1:
            return f"must be between 0 and 1 (exclusive) to bury, got {excerpt(v)}"
        if above_one and not v > 1:
            return f"must be > 1 to boost, got {excerpt(v)}"
        return None

    return check


def _int(minimum: int) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {excerpt(v)}"
        return None if v >= minimum else f"must be >= {minimum}, got {excerpt(v)}"

    return check


def _strings(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(s, (str, int)) and not isinstance(s, bool) for s in v):
        return f"must be a list of strings, got {excerpt(v)}"
    return None


def _ints(v: Any) -> str | None:
    if (
        not isinstance(v, list)
        or not v
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
    ):
        return f"must be a non-empty list of positions >= 0, got {excerpt(v)}"
    return None if len(set(v)) == len(v) else f"has duplicate positions {excerpt(v)}"


def _string(v: Any) -> str | None:
    return (
        None
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v)
        else f"must be a string, got {excerpt(v)}"
    )


def _time(v: Any) -> str | None:
    try:
        to_epoch(v)
    except (TypeError, ValueError, OverflowError) as exc:
        return str(exc)
    return None


MATCH = {"items": (_strings, False), "categories": (_strings, False), "tags": (_strings, False)}
# rule type -> field -> (check, required)
SCHEMA: dict[str, dict[str, tuple[Check, bool]]] = {
    "blacklist": {"items": (_strings, False), "categories": (_strings, False)},
    "filter_seen": {"ttl_hours": (_num(positive=True), True)},
    "filter_unpublished": {},
    "frequency_cap": {"max_impressions": (_int(1), True), "period_hours": (_num(positive=True), True)},
    "boost": {"multiplier": (_num(above_one=True), True), **MATCH},
    "bury": {"multiplier": (_num(below_one=True), True), **MATCH},
    "freshness": {"max_boost": (_num(positive=True), True), "half_life_hours": (_num(positive=True), True)},
    "category_diversity": {"max_per_window": (_int(1), True), "window": (_int(2), True)},
    "exploration": {"slots": (_ints, True)},
    "pin": {
        "item": (_string, True),
        "position": (_int(0), True),
        "start": (_time, False),
        "end": (_time, False),
    },
}
COMMON = {"name", "type", "enabled"}


def to_epoch(value: Any) -> float:
    """Epoch seconds from a finite number, an ISO 8601 string or a datetime (naive means UTC)."""
    if isinstance(value, bool):
        raise TypeError(f"must be a time, got {value!r}")
    if isinstance(value, (int, float)):
        if not _finite(value):
            raise ValueError(f"must be a finite time, got {excerpt(value)}")
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"must be an ISO 8601 time, got {excerpt(value)}") from exc
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    raise TypeError(f"must be a time, got {excerpt(value)}")

"""Operator rules from YAML: a strict schema checked at load, then turned into rerank operators."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recommender_client.pipeline import Operator
from recommender_client.recall.artifacts import Catalog
from recommender_client.rerank.exposure import ExposureLog
from recommender_client.rerank.operators import (
    HOUR,
    BoostFreshness,
    CapFrequency,
    CapPerCategory,
    FilterBlacklisted,
    FilterSeen,
    FilterUnpublished,
    InsertExploration,
    Pin,
    PinItems,
    ScaleScores,
    SeenLookup,
)
from recommender_client.stages import OrderByScore


class RulesError(ValueError):
    """A rules file is unreadable or breaks the schema (the message names the rule and field)."""


def _num(
    positive: bool = False, below_one: bool = False, above_one: bool = False
) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number, got {v!r}"
        if positive and not v > 0:
            return f"must be > 0, got {v!r}"
        if below_one and not 0 < v < 1:
            return f"must be between 0 and 1 (exclusive) to bury, got {v!r}"
        if above_one and not v > 1:
            return f"must be > 1 to boost, got {v!r}"
        return None

    return check


def _int(minimum: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {v!r}"
        return None if v >= minimum else f"must be >= {minimum}, got {v!r}"

    return check


def _strings(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(s, (str, int)) and not isinstance(s, bool) for s in v):
        return f"must be a list of strings, got {v!r}"
    return None


def _ints(v: Any) -> str | None:
    if (
        not isinstance(v, list)
        or not v
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
    ):
        return f"must be a non-empty list of positions >= 0, got {v!r}"
    return None if len(set(v)) == len(v) else f"has duplicate positions {v!r}"


def _string(v: Any) -> str | None:
    return (
        None
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v)
        else f"must be a string, got {v!r}"
    )


def _time(v: Any) -> str | None:
    try:
        to_epoch(v)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


MATCH = {"items": (_strings, False), "categories": (_strings, False), "tags": (_strings, False)}
# rule type -> field -> (check, required)
SCHEMA: dict[str, dict[str, tuple[Callable[[Any], str | None], bool]]] = {
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
    """Epoch seconds from a number, an ISO 8601 string or a datetime (naive means UTC)."""
    if isinstance(value, bool):
        raise TypeError(f"must be a time, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"must be an ISO 8601 time, got {value!r}") from exc
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    raise TypeError(f"must be a time, got {value!r}")


@dataclass(frozen=True)
class Rule:
    """One validated rule: its name, type and parameters."""

    name: str
    type: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class RuleSet:
    """The enabled rules of one file, in file order, with a digest identifying the version."""

    rules: tuple[Rule, ...]
    digest: str = ""
    source: str = "<memory>"


def parse_rules(text: str, *, source: str = "<memory>") -> RuleSet:
    """Parse and validate rules YAML.

    Raises:
        RulesError: naming the file, the rule (name or index) and the field at fault.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {"rules": []}
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a mapping with a 'rules' list at the top")
    extra = sorted(set(data) - {"version", "rules"})
    if extra:
        raise RulesError(f"{source}: unknown top-level keys {extra} (expected 'version', 'rules')")
    if data.get("version", 1) != 1:
        raise RulesError(f"{source}: unsupported rules version {data.get('version')!r} (expected 1)")
    raw = data.get("rules") or []
    if not isinstance(raw, list):
        raise RulesError(f"{source}: 'rules' must be a list")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, entry in enumerate(raw):
        rule = _parse_rule(entry, index, source)
        if rule.name in names:
            raise RulesError(f"{source}: rule {rule.name!r}: duplicate rule name")
        names.add(rule.name)
        if entry.get("enabled", True):
            rules.append(rule)
    _check_together(rules, source)
    return RuleSet(tuple(rules), hashlib.sha256(text.encode()).hexdigest()[:12], source)


def _parse_rule(entry: Any, index: int, source: str) -> Rule:
    where = f"{source}: rule #{index}"
    if not isinstance(entry, dict):
        raise RulesError(f"{where}: must be a mapping, got {entry!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        hint = " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(name, bool) else ""
        raise RulesError(f"{where}: field 'name' must be a non-empty string, got {name!r}{hint}")
    where = f"{source}: rule {name!r}"
    kind = entry.get("type")
    if kind not in SCHEMA:
        raise RulesError(f"{where}: field 'type' must be one of {sorted(SCHEMA)}, got {kind!r}")
    fields = SCHEMA[kind]
    unknown = sorted(set(entry) - COMMON - set(fields))
    if unknown:
        raise RulesError(f"{where} ({kind}): unknown fields {unknown} (allowed: {sorted(fields)})")
    if not isinstance(entry.get("enabled", True), bool):
        raise RulesError(f"{where}: field 'enabled' must be true or false")
    for field_name, (check, required) in fields.items():
        if field_name not in entry:
            if required:
                raise RulesError(f"{where} ({kind}): missing field {field_name!r}")
            continue
        problem = check(entry[field_name])
        if problem:
            raise RulesError(f"{where} ({kind}): field {field_name!r} {problem}")
    params = {k: v for k, v in entry.items() if k not in COMMON}
    for key in ("items", "categories", "tags"):
        if key in params:
            params[key] = [str(v) for v in params[key]]
    if kind in ("blacklist", "boost", "bury") and not any(
        params.get(k) for k in ("items", "categories", "tags")
    ):
        raise RulesError(
            f"{where} ({kind}): give at least one of 'items', 'categories'"
            + (", 'tags'" if kind != "blacklist" else "")
        )
    if kind == "category_diversity" and params["max_per_window"] >= params["window"]:
        raise RulesError(f"{where} ({kind}): field 'max_per_window' must be < 'window'")
    if kind == "pin":
        params["item"] = str(params["item"])
        for key in ("start", "end"):
            if key in params:
                params[key] = to_epoch(params[key])
        if "start" in params and "end" in params and params["end"] <= params["start"]:
            raise RulesError(f"{where} ({kind}): field 'end' must be after 'start'")
    return Rule(name=name, type=kind, params=params)


def _check_together(rules: Sequence[Rule], source: str) -> None:
    pins = [r for r in rules if r.type == "pin"]
    for key in ("item", "position"):
        seen: dict[Any, str] = {}
        for r in pins:
            if r.params[key] in seen:
                raise RulesError(
                    f"{source}: rule {r.name!r} (pin): field {key!r} {r.params[key]!r} is already pinned by "
                    f"rule {seen[r.params[key]]!r}"
                )
            seen[r.params[key]] = r.name
    explorations = [r.name for r in rules if r.type == "exploration"]
    if len(explorations) > 1:
        raise RulesError(f"{source}: rules {explorations}: at most one exploration rule")


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read rules file {source}: {exc}") from exc
    return parse_rules(text, source=str(source))


FILTERS = ("blacklist", "filter_unpublished", "filter_seen", "frequency_cap")
SCALES = ("boost", "bury", "freshness")


def build_operators(
    ruleset: RuleSet, *, catalog: Catalog, seen: SeenLookup, exposures: ExposureLog
) -> list[Operator]:
    """The rerank stages for a rule set, in a fixed phase order (file order within a phase).

    Filters, then score multipliers and a re-sort, then category diversity, then exploration,
    then pins last, so a pinned position always holds.
    """
    ops: list[Operator] = []
    by_type = lambda *types: [r for r in ruleset.rules if r.type in types]  # noqa: E731
    for r in by_type(*FILTERS):
        p = r.params
        if r.type == "blacklist":
            ops.append(
                FilterBlacklisted(r.name, items=p.get("items", ()), categories=p.get("categories", ()))
            )
        elif r.type == "filter_unpublished":
            ops.append(FilterUnpublished(r.name))
        elif r.type == "filter_seen":
            ops.append(FilterSeen(r.name, ttl_s=p["ttl_hours"] * HOUR, seen=seen))
        else:
            ops.append(
                CapFrequency(
                    r.name,
                    exposures=exposures,
                    max_impressions=p["max_impressions"],
                    period_s=p["period_hours"] * HOUR,
                )
            )
    scales = by_type(*SCALES)
    for r in scales:
        p = r.params
        if r.type == "freshness":
            ops.append(BoostFreshness(r.name, max_boost=p["max_boost"], half_life_hours=p["half_life_hours"]))
        else:
            ops.append(
                ScaleScores(
                    r.name,
                    multiplier=p["multiplier"],
                    items=p.get("items", ()),
                    categories=p.get("categories", ()),
                    tags=p.get("tags", ()),
                )
            )
    if scales:
        ops.append(OrderByScore())
    for r in by_type("category_diversity"):
        ops.append(
            CapPerCategory(r.name, max_per_window=r.params["max_per_window"], window=r.params["window"])
        )
    for r in by_type("exploration"):
        ops.append(InsertExploration(r.name, slots=r.params["slots"]))
    pins = [
        Pin(r.name, r.params["item"], r.params["position"], r.params.get("start"), r.params.get("end"))
        for r in by_type("pin")
    ]
    if pins:
        ops.append(PinItems(pins, catalog=catalog))
    return ops

"""Operator rules from YAML: a strict schema checked at load, then turned into rerank operators."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recommender_client.excerpt import clip, excerpt
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
from recommender_client.rerank.schema import COMMON, SCHEMA, to_epoch
from recommender_client.stages import OrderByScore


class RulesError(ValueError):
    """A rules file is unreadable or breaks the schema (the message names the rule and field)."""


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


# The deepest a valid file nests is 4 (file mapping, rules list, rule mapping, items list); PyYAML
# builds nodes recursively, so ~1,000 levels raise RecursionError instead of a YAML error.
MAX_DEPTH = 20
# ~10,000 rules. A reload runs inside the request that notices the change and PyYAML parses about
# 1 MB/s, so a larger file would stall requests rather than configure them.
MAX_RULES_BYTES = 1 << 20
CLEAR_ALL = "rules: []"


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` before composing (PyYAML's event parser is iterative)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise RulesError(f"{source}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def parse_rules(text: str, *, source: str = "<memory>") -> RuleSet:
    """Parse and validate rules YAML.

    An empty document (a 0-byte file, only comments, ``null``) and a mapping without a
    ``rules`` list are errors, not "no rules": an editor that truncates the file must not
    switch off every filter and cap. Clearing every rule takes the explicit ``rules: []``.

    Raises:
        RulesError: naming the file, the rule (name or index) and the field at fault.
    """
    try:
        _check_depth(text, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {clip(str(exc), 500)}") from exc
    except ValueError as exc:  # the SafeLoader's own constructors, e.g. a timestamp 2024-02-30
        raise RulesError(f"{source}: not valid YAML: {clip(str(exc), 500)}") from exc
    if data is None:
        raise RulesError(f"{source}: the file is empty; to clear every rule write {CLEAR_ALL!r}")
    if not isinstance(data, dict):
        raise RulesError(
            f"{source}: expected a mapping with a 'rules' list at the top, got {type(data).__name__}"
        )
    extra = sorted(map(str, set(data) - {"version", "rules"}))
    if extra:
        raise RulesError(f"{source}: unknown top-level keys {excerpt(extra)} (expected 'version', 'rules')")
    if data.get("version", 1) != 1:
        raise RulesError(f"{source}: unsupported rules version {excerpt(data.get('version'))} (expected 1)")
    raw = data.get("rules")
    if not isinstance(raw, list):
        raise RulesError(
            f"{source}: 'rules' must be a list, got {excerpt(raw)}; to clear every rule write {CLEAR_ALL!r}"
        )
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
    return RuleSet(
        tuple(rules), hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12], source
    )


def _parse_rule(entry: Any, index: int, source: str) -> Rule:
    where = f"{source}: rule #{index}"
    if not isinstance(entry, dict):
        raise RulesError(f"{where}: must be a mapping, got {excerpt(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        hint = " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(name, bool) else ""
        raise RulesError(f"{where}: field 'name' must be a non-empty string, got {excerpt(name)}{hint}")
    where = f"{source}: rule {excerpt(name)}"
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in SCHEMA:
        raise RulesError(f"{where}: field 'type' must be one of {sorted(SCHEMA)}, got {excerpt(kind)}")
    fields = SCHEMA[kind]
    unknown = sorted(map(str, set(entry) - COMMON - set(fields)))
    if unknown:
        raise RulesError(f"{where} ({kind}): unknown fields {excerpt(unknown)} (allowed: {sorted(fields)})")
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
    """Read and validate a rules file (UTF-8, at most ``MAX_RULES_BYTES``)."""
    source = Path(path)
    try:
        with source.open("rb") as f:
            raw = f.read(MAX_RULES_BYTES + 1)
    except OSError as exc:
        raise RulesError(f"cannot read rules file {source}: {exc}") from exc
    if len(raw) > MAX_RULES_BYTES:
        raise RulesError(f"{source}: larger than {MAX_RULES_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(
            f"{source}: not UTF-8: byte {raw[exc.start]:#04x} at offset {exc.start} ({exc.reason})"
        ) from exc
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

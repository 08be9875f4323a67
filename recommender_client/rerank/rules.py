"""Operator rules from YAML: a strict schema checked at load, then turned into rerank operators."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    ScaleScores,
    SeenLookup,
)
from recommender_client.rerank.pins import Pin, PinItems
from recommender_client.rerank.schema import COMMON, RuleSpec, to_epoch  # noqa: F401 (re-exported)
from recommender_client.rerank.validation import RulesError, location, validate_rule
from recommender_client.stages import OrderByScore


@dataclass(frozen=True)
class Rule:
    """One validated rule: its name, type, parameters (the fields the file set) and its model."""

    name: str
    type: str
    params: Mapping[str, Any]
    spec: RuleSpec | None = field(default=None, compare=False)
    index: int = field(default=0, compare=False)


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
    return rules_from_document(parse_yaml(text, source=source), text=text, source=source)


def parse_yaml(text: str, *, source: str = "<memory>") -> Any:
    """The YAML document of rules text, its depth checked first; any parse failure a ``RulesError``.

    The first half of :func:`parse_rules`, apart so the console can show a draft's document and
    validate it without parsing the text twice.
    """
    try:
        _check_depth(text, source)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {clip(str(exc), 500)}") from exc
    except ValueError as exc:  # the SafeLoader's own constructors, e.g. a timestamp 2024-02-30
        raise RulesError(f"{source}: not valid YAML: {clip(str(exc), 500)}") from exc


def rules_from_document(data: Any, *, text: str, source: str = "<memory>") -> RuleSet:
    """The second half of :func:`parse_rules`: ``data`` is ``parse_yaml(text)``, ``text`` gives the digest.

    Raises:
        RulesError: as :func:`parse_rules`.
    """
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
            where = location(index, ["name"])
            raise RulesError(
                f"{source}: rule {rule.name!r}: duplicate rule name (at {where})", locations=[where]
            )
        names.add(rule.name)
        if rule.spec is not None and rule.spec.enabled:
            rules.append(rule)
    _check_together(rules, source)
    return RuleSet(tuple(rules), rules_digest(text), source)


def rules_digest(text: str) -> str:
    """The rules version the service reports (``RuleSet.digest``): sha256 of the file's bytes, 12 hex digits.

    The console keeps a damaged file's undecodable bytes as lone surrogates
    (``read_rules_text(keep_undecodable=True)``); ``surrogateescape`` turns them back into those
    bytes, so its digest is still that of the file. Text that parses holds no surrogates (PyYAML
    refuses them), so for valid rules this is plain UTF-8.
    """
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _parse_rule(entry: Any, index: int, source: str) -> Rule:
    spec = validate_rule(entry, index, source)
    params = spec.model_dump(exclude=set(COMMON), exclude_unset=True)
    return Rule(name=spec.name, type=entry["type"], params=params, spec=spec, index=index)


def _pin(rule: Rule) -> Pin:
    p = rule.params
    return Pin(rule.name, p["item"], p["position"], p.get("start"), p.get("end"))


def _check_together(rules: Sequence[Rule], source: str) -> None:
    """Pins of one item or one position may coexist only in windows that never overlap."""
    pins = [r for r in rules if r.type == "pin"]
    for later, r in enumerate(pins):
        for earlier in pins[:later]:
            key = _pin(r).conflict(_pin(earlier))
            if key is not None:
                where = location(r.index, [key])
                raise RulesError(
                    f"{source}: rule {r.name!r} (pin): field {key!r} {r.params[key]!r} is already pinned by "
                    f"rule {earlier.name!r} in an overlapping time window (at {where})",
                    locations=[where],
                )
    explorations = [r.name for r in rules if r.type == "exploration"]
    if len(explorations) > 1:
        raise RulesError(f"{source}: rules {explorations}: at most one exploration rule")


def read_rules_text(path: Path, *, keep_undecodable: bool = False) -> str:
    """The text of a rules file of at most ``MAX_RULES_BYTES``: the one reader of service and console.

    The service refuses a file that is not UTF-8 (its reload keeps the rules in force); the
    console reads one anyway (``keep_undecodable``: such bytes become lone surrogates) so it can
    show it, record it as a version and replace it.

    Raises:
        OSError: the file cannot be read.
        RulesError: it is larger than ``MAX_RULES_BYTES``, or not UTF-8 (unless ``keep_undecodable``).
    """
    with path.open("rb") as f:
        raw = f.read(MAX_RULES_BYTES + 1)
    if len(raw) > MAX_RULES_BYTES:
        raise RulesError(f"{path}: larger than {MAX_RULES_BYTES} bytes")
    if keep_undecodable:
        return raw.decode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(
            f"{path}: not UTF-8: byte {raw[exc.start]:#04x} at offset {exc.start} ({exc.reason})"
        ) from exc


def load_rules(path: str | Path) -> RuleSet:
    """Read and validate a rules file (UTF-8, at most ``MAX_RULES_BYTES``)."""
    source = Path(path)
    try:
        text = read_rules_text(source)
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
    filters: list[Operator] = []
    by_type = lambda *types: [r for r in ruleset.rules if r.type in types]  # noqa: E731
    for r in by_type(*FILTERS):
        p = r.params
        if r.type == "blacklist":
            filters.append(
                FilterBlacklisted(r.name, items=p.get("items", ()), categories=p.get("categories", ()))
            )
        elif r.type == "filter_unpublished":
            filters.append(FilterUnpublished(r.name))
        elif r.type == "filter_seen":
            filters.append(FilterSeen(r.name, ttl_s=p["ttl_hours"] * HOUR, seen=seen))
        else:
            filters.append(
                CapFrequency(
                    r.name,
                    exposures=exposures,
                    max_impressions=p["max_impressions"],
                    period_s=p["period_hours"] * HOUR,
                )
            )
    ops += filters
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
    pins = [_pin(r) for r in by_type("pin")]
    if pins:
        ops.append(PinItems(pins, catalog=catalog, filters=filters))
    return ops

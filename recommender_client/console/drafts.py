"""A draft of the rules as YAML text or as a form's document, checked by the service's own parser."""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from recommender_client.rerank.rules import RulesError, RuleSet, parse_yaml, rules_from_document

_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Problem:
    """What is wrong with a draft and where: ``rules[1].categories[0]`` and its line in the YAML (1-based)."""

    message: str
    locations: tuple[str, ...] = ()
    lines: tuple[int | None, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "locations": list(self.locations), "lines": list(self.lines)}


@dataclass(frozen=True)
class Checked:
    """A draft after validation: its text, its document (when the YAML parses) and the verdict."""

    text: str
    document: dict[str, Any] | None
    ruleset: RuleSet | None
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.ruleset is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "yaml": self.text,
            "document": self.document,
            "digest": self.ruleset.digest if self.ruleset is not None else None,
            "enabled_rules": len(self.ruleset.rules) if self.ruleset is not None else None,
            "errors": [p.to_json() for p in self.problems],
        }


def json_safe(value: Any) -> Any:
    """YAML data as JSON can carry it: timestamps as ISO 8601 strings, keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN: JSON has none
        return ".nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    return value


class DraftTooLarge(Exception):
    """A form's document whose YAML runs past ``max_bytes``: the dump stops there."""


class _Capped(io.StringIO):
    """A text buffer refusing to grow past ``max_bytes`` of UTF-8.

    Block-style YAML indents every line by its depth, so a deeply nested list of a 1 MiB JSON
    body dumps to tens of MB; the emitter writes as it goes, and this stops it at the limit.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self._left = max_bytes

    def write(self, text: str) -> int:
        self._left -= len(text.encode("utf-8", "surrogatepass"))
        if self._left < 0:
            raise DraftTooLarge
        return super().write(text)


def to_yaml(document: dict[str, Any], *, max_bytes: int | None = None) -> str:
    """A form's document as YAML (``version`` first, then the rules in order).

    Raises:
        DraftTooLarge: the YAML would be longer than ``max_bytes`` (None: no limit).
    """
    ordered = {"version": document.get("version", 1), **{k: v for k, v in document.items() if k != "version"}}
    out = io.StringIO() if max_bytes is None else _Capped(max_bytes)
    yaml.safe_dump(ordered, out, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return out.getvalue()


def _parts(location: str) -> list[int | str]:
    out: list[int | str] = []
    for match in _PART.finditer("." + location):
        out.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
    return out


def line_of(text: str, location: str) -> int | None:
    """The 1-based line where the value at ``location`` (``rules[1].multiplier``) starts in ``text``.

    The deepest node that exists is named (a missing field points at its rule).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    for part in _parts(location):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            children = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not children:
                break
            node = children[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return int(node.start_mark.line) + 1


def _yaml_line(exc: RulesError) -> int | None:
    match = re.search(r"line (\d+)", str(exc))
    return int(match.group(1)) if match else None


def check_text(text: str, *, source: str = "draft") -> Checked:
    """Validate YAML text exactly as the service's reload does (``parse_rules``), parsing it once.

    The document (for the form) is the one validated; it is None where the YAML does not parse
    or nests deeper than the service reads.
    """
    document: dict[str, Any] | None = None
    try:
        data = parse_yaml(text, source=source)
        if isinstance(data, dict):
            document = json_safe(data)
        ruleset = rules_from_document(data, text=text, source=source)
    except RulesError as exc:
        lines = tuple(line_of(text, loc) for loc in exc.locations) or (_yaml_line(exc),)
        problem = Problem(str(exc), exc.locations, lines)
        return Checked(text, document, None, (problem,))
    return Checked(text, document, ruleset)


def check_document(document: dict[str, Any], *, max_bytes: int, source: str = "draft") -> Checked:
    """Validate a form's document: dumped to YAML (at most ``max_bytes``), then the same check as text.

    Raises:
        DraftTooLarge: its YAML is longer than ``max_bytes``.
    """
    try:
        text = to_yaml(document, max_bytes=max_bytes)
    except yaml.YAMLError as exc:  # a value YAML cannot represent
        return Checked("", document, None, (Problem(f"{source}: cannot be written as YAML: {exc}"),))
    return check_text(text, source=source)

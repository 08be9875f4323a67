"""One rule entry validated against its kind's model; pydantic's errors become operator-readable lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from recommender_client.excerpt import excerpt
from recommender_client.rerank.schema import KINDS, RULE_ADAPTER, RuleSpec

# A file with many broken rules still gives a bounded log line.
MAX_LISTED_ERRORS = 5


class RulesError(ValueError):
    """A rules file is unreadable or breaks the schema (the message names the rule, field and location).

    Attributes:
        locations: where each problem is, as ``rules[3].categories[0]`` (empty for file-level problems).
    """

    def __init__(self, message: str, *, locations: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.locations = tuple(locations)


def location(index: int, loc: Sequence[int | str] = ()) -> str:
    """``rules[3].categories[0]``: the path of a value inside the rules file."""
    out = f"rules[{index}]"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _field(loc: Sequence[int | str]) -> str:
    return location(0, loc).removeprefix("rules[0]").lstrip(".")


# pydantic error type -> what is wrong, from the error's context
_TEXTS = {
    "missing": "is missing",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "string_too_short": "must be a non-empty string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "too_short": "must not be empty",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
}


def _describe(error: ErrorDetails) -> str:
    """What is wrong with one value, quoting it (bounded); custom errors carry their own text."""
    kind, value = error["type"], error.get("input")
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        kind = "finite_number"  # an int beyond any float (10**400)
    if kind == "too_short" and isinstance(value, str):
        kind = "string_too_short"
    template = _TEXTS.get(kind)
    if template is None:
        return error["msg"]
    bounds = {
        k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in error.get("ctx", {}).items()
    }
    return template.format(**bounds) + f", got {excerpt(value)}"


def validate_rule(entry: Any, index: int, source: str) -> RuleSpec:
    """The entry as its kind's model.

    Raises:
        RulesError: naming the file, the rule (by name, else by index), its kind and each field at
            fault with its location in the file.
    """
    name = entry.get("name") if isinstance(entry, dict) else None
    where = (
        f"{source}: rule {excerpt(name)}" if isinstance(name, str) and name else f"{source}: rule #{index}"
    )
    if not isinstance(entry, dict):
        raise RulesError(f"{where}: must be a mapping, got {excerpt(entry)}", locations=[location(index)])
    if not (isinstance(name, str) and name):
        hint = " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(name, bool) else ""
        raise RulesError(
            f"{where}: field 'name' must be a non-empty string, got {excerpt(name)}{hint} "
            f"(at {location(index, ['name'])})",
            locations=[location(index, ["name"])],
        )
    try:
        return RULE_ADAPTER.validate_python(entry)  # type: ignore[no-any-return]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    kind = entry.get("type")
    if errors[0]["type"].startswith("union_tag"):
        raise RulesError(
            f"{where}: field 'type' must be one of {sorted(KINDS)}, got {excerpt(kind)} "
            f"(at {location(index, ['type'])})",
            locations=[location(index, ["type"])],
        )
    where += f" ({kind})"
    unknown = [e["loc"][1] for e in errors if e["type"] in ("extra_forbidden", "invalid_key")]
    lines, locations = [], []
    if unknown:
        allowed = sorted(set(KINDS[str(kind)].model_fields) - {"type", "name", "enabled"})
        lines.append(f"unknown fields {excerpt(sorted(map(str, unknown)))} (allowed: {allowed})")
        locations += [location(index, [u]) for u in unknown]
    for e in errors:
        loc = e["loc"][1:]  # the first part is the union's tag
        if e["type"] in ("extra_forbidden", "invalid_key"):
            continue
        locations.append(location(index, loc))
        if not loc:  # a check across fields
            lines.append(f"{e['msg']} (at {location(index)})")
        elif e["type"] == "missing":
            lines.append(f"missing field {_field(loc)!r} (at {location(index, loc)})")
        else:
            lines.append(f"field {_field(loc)!r} {_describe(e)} (at {location(index, loc)})")
    more = f"; and {len(lines) - MAX_LISTED_ERRORS} more" if len(lines) > MAX_LISTED_ERRORS else ""
    raise RulesError(f"{where}: " + "; ".join(lines[:MAX_LISTED_ERRORS]) + more, locations=locations)

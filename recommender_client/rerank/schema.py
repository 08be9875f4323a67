"""The rules file's schema: one pydantic model per rule kind, a union on ``type``, exportable as JSON Schema."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from recommender_client.excerpt import excerpt


def _finite(v: Any) -> bool:
    """Whether a YAML number is a finite float (``.inf``, ``.nan`` and 10**400 are not).

    An infinite multiplier turns every score into inf or NaN, and an int too large for a
    float raises OverflowError when a request multiplies by it: both must fail the reload.
    """
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


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


def _epoch(value: Any) -> float:
    try:
        return to_epoch(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PydanticCustomError("time", str(exc)) from None


def _id_text(value: Any) -> Any:
    """YAML reads ``items: [42]`` as an int: ids and categories are strings, so take its digits."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _distinct(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise PydanticCustomError(
            "duplicate", "has duplicate positions {values}", {"values": excerpt(values)}
        )
    return values


# A rule's strings match item ids and categories exactly; "" would match every item without a
# category (the catalogue's value for "none"), so it is refused rather than read as "nothing".
Text = Annotated[str, BeforeValidator(_id_text), StringConstraints(min_length=1)]
Texts = list[Text]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Time = Annotated[
    float,
    BeforeValidator(_epoch),
    WithJsonSchema(
        {"anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]},
        mode="validation",
    ),
]
Slots = Annotated[
    list[Annotated[int, Field(ge=0)]],
    Field(min_length=1, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_distinct),
]


class RuleSpec(BaseModel):
    """Fields every rule has; strict, so YAML's ``yes`` (a bool) is never taken for a name."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[str, StringConstraints(min_length=1)] = Field(description="unique within the file")
    enabled: bool = True


class _Matching(RuleSpec):
    """Rules that select items by id, category or tag (at least one list must be non-empty)."""

    items: Texts = []
    categories: Texts = []
    tags: Texts = []

    @model_validator(mode="after")
    def _selects_something(self) -> _Matching:
        if not (self.items or self.categories or self.tags):
            raise PydanticCustomError("selects_nothing", "give at least one of 'items', 'categories', 'tags'")
        return self


class Blacklist(RuleSpec):
    """Drop the listed items and every item of the listed categories."""

    type: Literal["blacklist"]
    items: Texts = []
    categories: Texts = []

    @model_validator(mode="after")
    def _selects_something(self) -> Blacklist:
        if not (self.items or self.categories):
            raise PydanticCustomError("selects_nothing", "give at least one of 'items', 'categories'")
        return self


class FilterUnpublished(RuleSpec):
    """Drop items published after ``now``."""

    type: Literal["filter_unpublished"]


class FilterSeen(RuleSpec):
    """Drop items the user interacted with within the last ``ttl_hours``."""

    type: Literal["filter_seen"]
    ttl_hours: Positive


class FrequencyCap(RuleSpec):
    """Drop items served ``max_impressions`` times within the last ``period_hours``."""

    type: Literal["frequency_cap"]
    max_impressions: Annotated[int, Field(ge=1)]
    period_hours: Positive


class Boost(_Matching):
    """Multiply the score of matching items by ``multiplier`` (> 1)."""

    type: Literal["boost"]
    multiplier: Annotated[float, Field(gt=1, allow_inf_nan=False)]


class Bury(_Matching):
    """Multiply the score of matching items by ``multiplier`` (between 0 and 1)."""

    type: Literal["bury"]
    multiplier: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class Freshness(RuleSpec):
    """Multiply scores by ``1 + max_boost * 0.5 ** (age_hours / half_life_hours)``."""

    type: Literal["freshness"]
    max_boost: Positive
    half_life_hours: Positive


class CategoryDiversity(RuleSpec):
    """At most ``max_per_window`` items of one category in any ``window`` consecutive positions."""

    type: Literal["category_diversity"]
    max_per_window: Annotated[int, Field(ge=1)]
    window: Annotated[int, Field(ge=2)]

    @model_validator(mode="after")
    def _fits(self) -> CategoryDiversity:
        if self.max_per_window >= self.window:
            raise PydanticCustomError("window", "field 'max_per_window' must be < 'window'")
        return self


class Exploration(RuleSpec):
    """Random items from beyond the top k at these 0-based positions."""

    type: Literal["exploration"]
    slots: Slots


class Pin(RuleSpec):
    """Keep ``item`` at ``position`` (0-based) while ``start <= now < end`` (ISO 8601 or epoch seconds)."""

    type: Literal["pin"]
    item: Text
    position: Annotated[int, Field(ge=0)]
    start: Time | None = None
    end: Time | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Pin:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise PydanticCustomError("window", "field 'end' must be after 'start'")
        return self


AnyRule = Annotated[
    Blacklist
    | FilterUnpublished
    | FilterSeen
    | FrequencyCap
    | Boost
    | Bury
    | Freshness
    | CategoryDiversity
    | Exploration
    | Pin,
    Field(discriminator="type"),
]
RULE_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyRule)
KINDS: dict[str, type[RuleSpec]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (Blacklist, FilterUnpublished, FilterSeen, FrequencyCap, Boost, Bury, Freshness)
    + (CategoryDiversity, Exploration, Pin)
}
COMMON = frozenset(RuleSpec.model_fields) | {"type"}


class RulesFile(BaseModel):
    """A whole rules file: ``version`` 1 and the rules, applied in phase order (see default_rules.yaml)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: Literal[1] = 1
    rules: list[AnyRule]


def rules_json_schema() -> dict[str, Any]:
    """The JSON Schema of a rules file (draft 2020-12), the one description a form is built from."""
    return RulesFile.model_json_schema()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recommender_client.rerank.schema``: print the JSON Schema or check a rules file."""
    parser = argparse.ArgumentParser(
        prog="python -m recommender_client.rerank.schema", description="The operator rules' schema."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--json-schema", action="store_true", help="print the rules file's JSON Schema")
    action.add_argument("--check", metavar="RULES_YAML", help="validate a rules file, print what is wrong")
    args = parser.parse_args(argv)
    if args.json_schema:
        print(json.dumps(rules_json_schema(), indent=2, sort_keys=True))
        return 0
    from recommender_client.rerank.rules import RulesError, load_rules

    try:
        ruleset = load_rules(args.check)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.check}: {len(ruleset.rules)} enabled rules, version {ruleset.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

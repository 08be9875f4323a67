"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import math
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

# The latest second an ISO 8601 date can name (9999-12-31T23:59:59Z): a later ``now`` is a
# client's mistake, not a time the rules can be evaluated at.
MAX_EPOCH_S = 253_402_300_799.0


def _id(value: Any) -> Any:
    """Ids may arrive as JSON numbers; they are strings inside the service."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class RecommendRequest(BaseModel):
    """``POST /recommend`` body. ``k`` and the candidates' count are checked by the route (400).

    The string, list and context limits come from the settings (see :func:`request_model`);
    NaN and Infinity are refused in every number (Python's JSON reads them, JSON does not).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user_id: str
    k: int = 10
    context: dict[str, Any] = Field(default_factory=dict)
    candidates: list[str] | None = Field(default=None, description="rank these instead of recalling")
    now: float | None = Field(
        default=None, ge=0, le=MAX_EPOCH_S, description="evaluate rules at this epoch time (replays)"
    )

    @field_validator("user_id", mode="before")
    @classmethod
    def _user_id(cls, value: Any) -> Any:
        return _id(value)


TOO_MANY_CANDIDATES = "too_many_candidates"


def _context_value(value: Any, *, max_length: int) -> Any:
    """A context value as JSON gave it: a string, finite number, boolean, null or list of strings.

    One check instead of a union of six types, so a bad value yields one error naming it
    (the feature join then checks it against the feature's own type).
    """
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        return value
    strings = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if strings is None or not all(isinstance(v, str) for v in strings):
        raise PydanticCustomError(
            "context_value_type", "Input should be a string, number, boolean, null or list of strings"
        )
    if any(len(v) > max_length for v in strings):
        raise PydanticCustomError(
            "string_too_long",
            "String should have at most {max_length} characters",
            {"max_length": max_length},
        )
    return value


def request_model(
    *, max_string_length: int, max_context_keys: int, max_candidates: int
) -> type[RecommendRequest]:
    """The request body model with the settings' limits, checked by pydantic-core while it parses.

    Every string (user id, candidate ids, context keys, context strings and list members) has
    at most ``max_string_length`` characters and the context at most ``max_context_keys`` keys.
    A candidates list over ``max_candidates`` fails as ``too_many_candidates`` before any of
    its ids is converted (the route answers it with a 400 naming the limit).
    """
    text = Annotated[str, StringConstraints(max_length=max_string_length)]
    value = Annotated[Any, PlainValidator(partial(_context_value, max_length=max_string_length))]

    class LimitedRecommendRequest(RecommendRequest):
        user_id: Annotated[str, StringConstraints(min_length=1, max_length=max_string_length)]
        context: dict[text, value] = Field(default_factory=dict, max_length=max_context_keys)
        candidates: list[text] | None = Field(default=None, description="rank these instead of recalling")

        @field_validator("candidates", mode="before")
        @classmethod
        def _candidate_ids(cls, value: Any) -> Any:
            if not isinstance(value, list):
                return value
            if len(value) > max_candidates:
                raise PydanticCustomError(
                    TOO_MANY_CANDIDATES,
                    "candidates must hold 1 to {limit} ids (max_request_candidates), got {count}",
                    {"limit": max_candidates, "count": len(value)},
                )
            return [_id(v) for v in value]

    return LimitedRecommendRequest


class RankedItem(BaseModel):
    """One recommended item with why it is where it is."""

    item_id: str
    position: int
    score: float | None = Field(description="model click probability; null when degraded or pinned in")
    rank_score: float | None = Field(description="score after boosts and buries")
    pre_rerank_position: int | None = Field(description="position in the model's order before the rules")
    recall_source: str
    rules: list[str] = Field(description="operator rules that moved or changed this item")
    propensity: float | None = Field(
        description="probability the ranking policy puts this item at this position: 1.0 unless "
        "exploration drew it (1/pool size); null when a pin made it uncomputable"
    )


class RecommendResponse(BaseModel):
    request_id: str = Field(
        description="the X-Request-Id header's value, or a generated uuid4; events name it"
    )
    user_id: str
    items: list[RankedItem]
    degraded: bool
    degraded_reason: str | None
    cold_start: bool
    model: str | None = Field(description="the model that scored the list (null when the fallback served)")
    model_version: int | None = Field(
        description="its version as the model server's answer reports it (null when degraded, or "
        "over REST, whose Predict answer carries no model_spec)"
    )
    rules_version: str
    experiment: str | None = Field(default=None, description="the running experiment (null: none)")
    arm: str | None = Field(default=None, description="the user's arm in it (by a hash of the user id)")
    served_arm: str | None = Field(
        default=None,
        description="the arm whose model scored the list: the stable arm when the user's arm's "
        "model was missing (a canary fallback), null when degraded or without an experiment",
    )
    candidates: int
    took_ms: float

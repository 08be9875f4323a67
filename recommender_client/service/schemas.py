"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ContextValue = str | int | float | bool | list[str] | None


def _id(value: Any) -> Any:
    """Ids may arrive as JSON numbers; they are strings inside the service."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class RecommendRequest(BaseModel):
    """``POST /recommend`` body. ``k`` is range-checked by the route (400, not 422)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=256)
    k: int = 10
    context: dict[str, ContextValue] = Field(default_factory=dict)
    candidates: list[str] | None = Field(default=None, description="rank these instead of recalling")
    now: float | None = Field(default=None, description="evaluate rules at this epoch time (replays)")

    @field_validator("user_id", mode="before")
    @classmethod
    def _user_id(cls, value: Any) -> Any:
        return _id(value)

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidate_ids(cls, value: Any) -> Any:
        return [_id(v) for v in value] if isinstance(value, list) else value


class RankedItem(BaseModel):
    """One recommended item with why it is where it is."""

    item_id: str
    position: int
    score: float | None = Field(description="model click probability; null when degraded or pinned in")
    rank_score: float | None = Field(description="score after boosts and buries")
    pre_rerank_position: int | None = Field(description="position in the model's order before the rules")
    recall_source: str
    rules: list[str] = Field(description="operator rules that moved or changed this item")


class RecommendResponse(BaseModel):
    user_id: str
    items: list[RankedItem]
    degraded: bool
    degraded_reason: str | None
    cold_start: bool
    model: str
    rules_version: str
    candidates: int
    took_ms: float

"""POST /events: impressions and clicks, validated, applied once each to the online state and logged."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol, cast

from fastapi import APIRouter, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from recommender_client.excerpt import clip
from recommender_client.jsonl_log import JsonLinesLog
from recommender_client.service.errors import ClientError, json_response, validation_detail
from recommender_client.service.request_id import MAX_LENGTH as ID_LENGTH
from recommender_client.service.settings import Settings

router = APIRouter()
ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"  # the X-Request-Id alphabet: ids go into logs and Parquet as is
MAX_POSITION = 10_000


class EventState(Protocol):
    """The part of the online state (``recommender_client.state.OnlineState``) events write to."""

    async def record_impressions(self, user_id: str, item_ids: Sequence[str], at: float) -> None: ...

    async def record_clicks(self, user_id: str, item_ids: Sequence[str], at: float) -> None: ...


class Event(BaseModel):
    """One impression or click; ``timestamp`` is epoch seconds within the settings' window of now."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)]
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=ID_LENGTH, pattern=ID_PATTERN)]
    user_id: str
    item_id: str
    type: Literal["impression", "click"]
    position: int = Field(ge=0, le=MAX_POSITION)
    timestamp: float

    @field_validator("user_id", "item_id")
    @classmethod
    def _bounded(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_string_length", 256)
        if not 1 <= len(value) <= limit:
            raise ValueError(f"must hold 1 to {limit} characters, got {len(value)}")
        return value

    @field_validator("timestamp")
    @classmethod
    def _recent(cls, value: float, info: ValidationInfo) -> float:
        ctx = info.context or {}
        now, before, after = ctx.get("now"), ctx.get("max_age_s"), ctx.get("max_ahead_s")
        if now is None or not math.isfinite(value):
            return value
        if not now - before <= value <= now + after:
            raise ValueError(
                f"must be within {before:g} s before and {after:g} s after the server's now ({now:.3f})"
            )
        return value


class EventBatch(BaseModel):
    """``POST /events`` body: at most ``events_max_batch`` events (checked by :class:`EventSink`)."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event]


class SharedClaims(Protocol):
    """A shared store's record of applied event ids (``RedisState``): idempotency across replicas."""

    async def claim_events(self, event_ids: Sequence[str], ttl_s: float) -> list[bool] | None: ...

    async def release_events(self, event_ids: Sequence[str]) -> None: ...


class EventSink:
    """Checks a batch, drops the event ids it has applied before, applies the rest and logs them.

    Idempotency: the last ``events_dedup_size`` event ids are remembered in process (oldest
    forgotten first), so a client's retry of a batch within that window is applied once. With
    a shared store (Redis), each new id is also claimed there (:meth:`claim`), so a retry that
    a load balancer sends to another replica is skipped too; the claim lives as long as an
    event may be old (``events_max_age_s + events_max_ahead_s``), after which its timestamp
    refuses it. A batch is applied in order; impressions and clicks of one user at one time go
    to the store in one call each.
    """

    def __init__(
        self, settings: Settings, state: EventState | None, *, log: JsonLinesLog | None = None
    ) -> None:
        self.settings = settings
        self.state = state
        self.log = log
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.applied = 0
        self.duplicates = 0

    def parse(self, raw: bytes, now: float) -> list[Event]:
        settings = self.settings
        context = {
            "now": now,
            "max_age_s": settings.events_max_age_s,
            "max_ahead_s": settings.events_max_ahead_s,
            "max_string_length": settings.max_string_length,
        }
        try:
            batch = EventBatch.model_validate_json(raw, context=context)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"] == "json_invalid":
                reason = clip(first["msg"].removeprefix("Invalid JSON: "))
                raise ClientError(400, f"body is not valid JSON: {reason}", kind="invalid_json") from None
            raise ClientError(422, validation_detail(exc), kind="invalid_events") from None
        if not 1 <= len(batch.events) <= settings.events_max_batch:
            raise ClientError(
                413 if batch.events else 422,
                f"events must hold 1 to {settings.events_max_batch} events (events_max_batch), "
                f"got {len(batch.events)}",
                kind="too_many_events",
            )
        return batch.events

    def fresh(self, events: Sequence[Event]) -> list[Event]:
        """The events whose id was not applied before (nor earlier in this batch), reserving their ids.

        Reserved before the awaits of :meth:`apply`, so a concurrent retry of the same batch on
        this event loop is skipped too; :meth:`forget` releases them if applying fails.
        """
        out = []
        for event in events:
            if event.event_id in self._seen:
                self._seen.move_to_end(event.event_id)
                self.duplicates += 1
                continue
            self._seen[event.event_id] = None
            out.append(event)
        while len(self._seen) > self.settings.events_dedup_size:
            self._seen.popitem(last=False)
        return out

    async def claim(self, events: Sequence[Event]) -> list[Event]:
        """Of :meth:`fresh`'s events, those no other replica applied first (all of them without a
        shared store, or when it cannot answer: then only this process's memory dedups)."""
        claims = self._claims()
        if claims is None or not events:
            return list(events)
        settings = self.settings
        won = await claims.claim_events(
            [e.event_id for e in events], settings.events_max_age_s + settings.events_max_ahead_s
        )
        if won is None:
            return list(events)
        self.duplicates += won.count(False)
        return [e for e, first in zip(events, won, strict=True) if first]

    def _claims(self) -> SharedClaims | None:
        state = self.state
        return cast(SharedClaims, state) if hasattr(state, "claim_events") else None

    def forget(self, events: Sequence[Event]) -> None:
        """Release the ids :meth:`fresh` reserved for events that could not be applied."""
        for event in events:
            self._seen.pop(event.event_id, None)

    async def release(self, events: Sequence[Event]) -> None:
        """:meth:`forget`, and the shared claims of those events."""
        self.forget(events)
        claims = self._claims()
        if claims is not None:
            await claims.release_events([e.event_id for e in events])

    async def apply(self, events: Sequence[Event], *, received: float) -> None:
        """Write the events to the online state (grouped per user, kind and time) and the event log."""
        if self.state is None:
            raise RuntimeError("EventSink has no online state to apply events to")
        apply_impressions = self.settings.impressions_from == "events"
        groups: dict[tuple[str, str, float], list[str]] = defaultdict(list)
        for e in events:
            if e.type == "click" or apply_impressions:
                groups[(e.user_id, e.type, e.timestamp)].append(e.item_id)
        for (user_id, kind, at), items in groups.items():
            if kind == "click":
                await self.state.record_clicks(user_id, items, at)
            else:
                await self.state.record_impressions(user_id, items, at)
        self.applied += len(events)
        if self.log is not None:
            for e in events:
                self.log.append({**e.model_dump(), "received": received})


def events_log(settings: Settings) -> JsonLinesLog | None:
    """The event log the settings ask for, started."""
    if settings.events_log_path is None:
        return None
    return JsonLinesLog(
        settings.events_log_path,
        max_bytes=settings.served_log_max_bytes,
        backups=settings.served_log_backups,
        queue_size=settings.served_log_queue,
    ).start()


@router.post("/events", status_code=200)
async def post_events(request: Request) -> Response:
    """Record a batch of impressions and clicks: each event id is applied once (retries are safe).

    Answers ``{"accepted": n, "duplicates": d}``: ``d`` events had been applied before and were
    skipped. A malformed batch is refused whole (422 naming the field, e.g.
    ``["body", "events", 3, "timestamp"]``), so a client can fix and resend it.
    """
    state = request.app.state
    sink: EventSink = state.events
    settings: Settings = state.settings
    received = time.time()
    now = settings.fixed_now if settings.fixed_now is not None else received
    try:
        events = sink.parse(await state.intake.read(request), now)
    except ClientError as exc:
        state.metrics.errors.labels(kind=exc.kind).inc()
        return exc.response()
    local = sink.fresh(events)
    try:
        fresh = await sink.claim(local)
    except BaseException:
        sink.forget(local)
        raise
    try:
        await sink.apply(fresh, received=received)
    except BaseException:
        await sink.release(fresh)  # not applied: a retry must not be skipped as a duplicate
        raise
    body: dict[str, Any] = {"accepted": len(fresh), "duplicates": len(events) - len(fresh)}
    return json_response(200, body)

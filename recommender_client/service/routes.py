"""HTTP routes: /recommend, /healthz, /readyz, /metrics."""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recommender_client.breaker import BreakerState
from recommender_client.features import ContextError
from recommender_client.pipeline import Batch, RankRequest
from recommender_client.service.errors import ClientError
from recommender_client.service.metrics import ServiceMetrics
from recommender_client.service.readiness import readiness
from recommender_client.service.request_id import HEADER as REQUEST_ID_HEADER
from recommender_client.service.request_id import request_id
from recommender_client.service.request_time import exploration_seed, request_now
from recommender_client.service.schemas import RankedItem, RecommendResponse, request_model
from recommender_client.service.settings import Settings

router = APIRouter()
# The body as the default settings limit it (the app's Intake builds the model from its own settings).
DOCUMENTED_REQUEST = request_model(
    **{
        name: Settings.model_fields[field].default
        for name, field in (
            ("max_string_length", "max_string_length"),
            ("max_context_keys", "max_context_keys"),
            ("max_candidates", "max_request_candidates"),
        )
    }
)


def _refused(metrics: ServiceMetrics, exc: ClientError) -> Response:
    metrics.requests.labels(status=str(exc.status)).inc()
    metrics.errors.labels(kind=exc.kind).inc()
    return exc.response()


def _float(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _items(batch: Batch) -> list[RankedItem]:
    cols = batch.columns
    out = []
    for pos, item in enumerate(batch.items):
        pre = int(cols["pre_rerank_position"][pos])
        out.append(
            RankedItem(
                item_id=item,
                position=pos,
                score=_float(cols["model_score"][pos]),
                rank_score=_float(cols["rank_score"][pos]),
                pre_rerank_position=pre if pre >= 0 else None,
                recall_source=str(cols["recall_source"][pos]),
                rules=list(batch.rules[pos]),
                propensity=_float(cols["propensity"][pos]),
            )
        )
    return out


@router.post(
    "/recommend",
    response_model=RecommendResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DOCUMENTED_REQUEST.model_json_schema()}},
        }
    },
)
async def recommend(request: Request) -> Response:
    """Recall, score and rerank for one user.

    The body is read and checked by the app's :class:`Intake` (not by FastAPI), so a client's
    mistake is a 4xx with a bounded JSON error and its cost is bounded before any work starts.
    Always the recommender's async path: the user's online state is read once (awaited)
    before the stages and the served items recorded after. With an async model client (the
    service always makes one) the request stays on the event loop and only the Predict call
    is awaited: the CPU stages take ~1 ms, less than the thread hand-off they would need. A
    scorer without one (e.g. a LocalScorer given to create_app) runs the stages in a thread.
    """
    state = request.app.state
    settings, metrics = state.settings, state.metrics
    started = time.monotonic()
    try:
        rid = request_id(request.headers.get(REQUEST_ID_HEADER))
        body = state.intake.parse(await state.intake.read(request))
    except ClientError as exc:
        return _refused(metrics, exc)
    now = request_now(body.now, settings)
    rank_request = RankRequest(
        user_id=body.user_id,
        k=body.k,
        context=body.context,
        now=now,
        candidates=tuple(body.candidates) if body.candidates is not None else None,
        deadline=started + settings.request_deadline_s,
        seed=exploration_seed(settings.seed, body.user_id, now),
        request_id=rid,
    )
    recommender = state.recommender
    try:
        batch, ruleset = await recommender.recommend_async(rank_request, observe=metrics.observe_stage)
    except ContextError as exc:
        return _refused(metrics, ClientError(400, str(exc), kind="bad_context"))
    except Exception:
        metrics.requests.labels(status="500").inc()
        metrics.errors.labels(kind="internal").inc()
        raise
    degraded = bool(batch.values.get("degraded", False))
    if degraded:
        metrics.fallbacks.labels(reason=str(batch.values.get("degraded_reason"))).inc()
    breaker = state.recommender.breaker
    if breaker is not None:
        metrics.breaker_open.set(1.0 if breaker.state is BreakerState.OPEN else 0.0)
    metrics.candidates.observe(len(batch.values.get("model_items", ())))
    took = time.monotonic() - started
    metrics.request_seconds.labels(degraded=str(degraded).lower()).observe(took)
    metrics.requests.labels(status="200").inc()
    values = batch.values
    if values.get("experiment") is not None:
        metrics.observe_arm(values, took)
    served_by = batch.values.get("served_by")
    answer = RecommendResponse(
        request_id=rid,
        user_id=body.user_id,
        items=_items(batch),
        degraded=degraded,
        degraded_reason=batch.values.get("degraded_reason"),
        cold_start=not batch.values.get("user_known", False),
        model=(
            served_by.model_name
            if served_by is not None
            else None
            if degraded
            else settings.model_name  # a scorer that does not report one (e.g. a LocalScorer)
        ),
        model_version=served_by.version if served_by is not None else None,
        rules_version=ruleset.digest,
        experiment=values.get("experiment"),
        arm=values.get("arm"),
        served_arm=values.get("served_arm"),
        candidates=len(batch.values.get("model_items", ())),
        took_ms=round(took * 1000, 3),
    )
    # Built and checked once here; returning a Response skips FastAPI's second validation pass.
    return Response(
        content=answer.model_dump_json(), media_type="application/json", headers={REQUEST_ID_HEADER: rid}
    )


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, response: Response) -> dict[str, Any]:
    """Readiness: the ranker can answer (artefacts and rules loaded), whatever the model server's
    state; the model's health and signature check are fields (see service/readiness.py)."""
    response.status_code, body = readiness(request.app.state)
    return body


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition of this app's registry."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

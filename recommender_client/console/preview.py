"""Preview a draft: the service's own pipeline, scored once, reranked by the live rules and by the draft."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from recommender_client.pipeline import USER_STATE, Batch, Operator, RankRequest
from recommender_client.plan import build_plan
from recommender_client.recommender import Recommender
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.rerank.rules import RuleSet
from recommender_client.service.request_time import exploration_rng
from recommender_client.state.protocol import EMPTY_STATE


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


async def _run(ops: Sequence[Operator], batch: Batch, *, on_loop: bool) -> Batch:
    """The stages in order: awaiting remote ones on the loop (an async scorer), else all in a thread."""
    if not on_loop:
        return await asyncio.to_thread(_run_blocking, ops, batch)
    for op in ops:
        transform_async = getattr(op, "transform_async", None)
        batch = await transform_async(batch) if transform_async is not None else op(batch)
    return batch


def _run_blocking(ops: Sequence[Operator], batch: Batch) -> Batch:
    for op in ops:
        batch = op(batch)
    return batch


def _items(batch: Batch, other: Batch) -> list[dict[str, Any]]:
    """Each item of ``batch`` with its explanation and where it stands in ``other`` (None: absent)."""
    there = {item: pos for pos, item in enumerate(other.items)}
    cols = batch.columns
    out = []
    for pos, item in enumerate(batch.items):
        pre = int(cols["pre_rerank_position"][pos])
        elsewhere = there.get(item)
        out.append(
            {
                "item_id": item,
                "position": pos,
                "score": _number(cols["model_score"][pos]),
                "rank_score": _number(cols["rank_score"][pos]),
                "pre_rerank_position": pre if pre >= 0 else None,
                "recall_source": str(cols["recall_source"][pos]),
                "category": str(cols["category"][pos]),
                "rules": list(batch.rules[pos]),
                "other_position": elsewhere,
                "moved": elsewhere is None or elsewhere != pos,
            }
        )
    return out


def _candidates(scored: Batch) -> list[dict[str, Any]]:
    cols = scored.columns
    return [
        {
            "item_id": item,
            "recall_source": str(cols["recall_source"][pos]),
            "recall_position": int(cols["recall_position"][pos]),
            "category": str(cols["category"][pos]),
            "score": _number(cols["model_score"][pos]),
            "model_position": pos,
        }
        for pos, item in enumerate(scored.items)
    ]


async def preview(
    recommender: Recommender, draft: RuleSet, request: RankRequest, *, seed: int
) -> dict[str, Any]:
    """Recall and score once for ``request``, then rerank under the live rules and under ``draft``.

    The head of the live plan (recall, feature join, the model call through the service's own
    client and breaker, the model's order) runs once, so both lists rank the same scores; the
    rerank tail of each plan runs on that batch with the exploration generator /recommend would
    use. Nothing is recorded: no impressions, no served log. ``request.rng`` is ignored.
    """
    live_plan = recommender.plan()
    exposures = recommender.exposures if recommender.exposures is not None else InMemoryExposureLog()
    draft_plan = build_plan(draft, live_plan.loaded, exposures=exposures)
    head = live_plan.loaded.head
    tails = [plan.pipeline.operators[len(head) :] for plan in (live_plan, draft_plan)]
    if any(plan.pipeline.operators[: len(head)] != head for plan in (live_plan, draft_plan)):
        raise RuntimeError("preview: the plans do not start with their artefact set's stages")
    since = min(live_plan.impressions_since(request.now), draft_plan.impressions_since(request.now))
    state_error = None
    try:
        state = await recommender.online_state.snapshot(request.user_id, impressions_since=since)
    except Exception as exc:  # as /recommend: a store that fails answers empty
        state, state_error = EMPTY_STATE, f"{type(exc).__name__}: {exc}"
    on_loop = recommender.supports_async
    started = time.monotonic()
    scored = await _run(head, Batch(request, values={USER_STATE: state}), on_loop=on_loop)
    scored_at = time.monotonic()
    ranked = []
    for tail in tails:
        fresh = replace(request, rng=exploration_rng(seed, request.user_id, request.now))
        ranked.append(await _run(tail, replace(scored, request=fresh), on_loop=on_loop))
    live, drafted = ranked
    live_items, draft_items = _items(live, drafted), _items(drafted, live)
    values = scored.values
    served_by = values.get("served_by")
    by_source: dict[str, int] = {}
    for source in scored.columns.get("recall_source", ()):
        by_source[str(source)] = by_source.get(str(source), 0) + 1
    return {
        "user_id": request.user_id,
        "k": request.k,
        "now": request.now,
        "user_known": bool(values.get("user_known", False)),
        "degraded": bool(values.get("degraded", False)),
        "degraded_reason": values.get("degraded_reason"),
        "model": served_by.model_name if served_by is not None else None,
        "model_version": served_by.version if served_by is not None else None,
        "state_error": state_error,
        "recall": {"by_source": by_source, "candidates": len(scored)},
        "candidates": _candidates(scored),
        "live": {"rules_version": live_plan.ruleset.digest, "items": live_items},
        "draft": {"rules_version": draft.digest, "items": draft_items},
        "moved": [
            {"item_id": i["item_id"], "live_position": i["other_position"], "draft_position": i["position"]}
            for i in draft_items
            if i["moved"]
        ]
        + [
            {"item_id": i["item_id"], "live_position": i["position"], "draft_position": None}
            for i in live_items
            if i["other_position"] is None
        ],
        "took_ms": {
            "scoring": round((scored_at - started) * 1000, 3),
            "total": round((time.monotonic() - started) * 1000, 3),
        },
    }

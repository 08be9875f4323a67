"""Real log writers for the analysis tests: ServedLog for served lists, the app's EventSink for events."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recommender_client.served_log import ServedItem, ServedLog
from recommender_client.service.events import Event, EventSink, events_log
from recommender_client.service.settings import Settings
from recommender_client.state.memory import InProcessState

T = 1_700_000_000.0


def write_list(
    log: ServedLog,
    request_id: str,
    items: Sequence[str],
    *,
    scores: Sequence[float] | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    model_version: int | None = 1,
    experiment: str | None = None,
    arm: str | None = None,
    served_arm: str | None = None,
) -> None:
    """One served list, item k at position k, row k of ``inputs`` (default: one dummy feature)."""
    inputs = inputs if inputs is not None else {"item_id": np.array(list(items), dtype=object)}
    scores = scores if scores is not None else [0.5] * len(items)
    log.write(
        request_id=request_id,
        timestamp=T,
        user_id=f"u-{request_id}",
        model_name="ctr",
        model_version=model_version,
        items=[
            ServedItem(item, k, float(s), 1.0, k)
            for k, (item, s) in enumerate(zip(items, scores, strict=True))
        ],
        inputs=inputs,
        degraded=False,
        rules_version="r0",
        experiment=experiment,
        arm=arm,
        served_arm=arm if served_arm is None else served_arm,
    )


def post_events(tmp_path: Path, path: Path, events: Sequence[dict[str, Any]]) -> None:
    """Apply events through the app's EventSink (deduplicated by event id) into its event log."""
    settings = Settings(artifacts_dir=tmp_path, events_log_path=path, fixed_now=T)
    log = events_log(settings)
    sink = EventSink(settings, InProcessState(), log=log)
    parsed = [Event.model_validate(e) for e in events]
    asyncio.run(sink.apply(sink.fresh(parsed), received=T))
    assert log is not None
    log.close()


def click(event_id: str, request_id: str, item_id: str, position: int, kind: str = "click") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "request_id": request_id,
        "user_id": f"u-{request_id}",
        "item_id": item_id,
        "type": kind,
        "position": position,
        "timestamp": T,
    }

"""Replay logged requests through the exported SavedModel and compare with the scores TF Serving returned.

Each sampled request is scored as one batch of its sent rows, as the ranker's Predict carried
them, so an honest log is reproduced to float32 rounding (a kernel picked by batch size can
change the last bits) and any larger difference means the served model or its inputs differ
from what the log says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.features import FeatureContract, FeatureKind


@dataclass
class LoggedRequest:
    """The sent rows of one served list: feature columns and the scores the model server returned."""

    request_id: str
    model_version: int | None
    features: dict[str, list[Any]] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)


def sent_rows(record: dict[str, Any]) -> LoggedRequest:
    """The rows of a served-list record that went to TF Serving and have a score (as recommender_client.skew)."""
    out = LoggedRequest(record["request_id"], record.get("model_version"))
    for k, sent in enumerate(record["sent"]):
        if not sent or record["scores"][k] is None:
            continue
        out.scores.append(float(record["scores"][k]))
        for name, values in record["features"].items():
            out.features.setdefault(name, []).append(values[k])
    return out


def wire_arrays(contract: FeatureContract, features: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """The logged JSON values back in wire dtypes (a null numeric was a non-finite float: NaN)."""
    out = {}
    for feature in contract.features:
        if feature.name not in features:
            raise ValueError(f"the served log has no feature {feature.name!r} of the model's contract")
        values = features[feature.name]
        if feature.kind is FeatureKind.NUMERIC:
            out[feature.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        elif feature.kind is FeatureKind.CATEGORICAL_INT:
            out[feature.name] = np.array(values, dtype=np.int64)
        else:
            out[feature.name] = np.array(values, dtype=object)
    return out


@dataclass(frozen=True)
class ReplayResult:
    """Replayed against logged scores over the sampled requests' rows."""

    requests: int
    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    diffs: tuple[float, ...]


def replay(
    requests: Sequence[LoggedRequest],
    contract: FeatureContract,
    score: Any,
    *,
    sample: int,
    rng: np.random.Generator,
) -> ReplayResult:
    """Score up to ``sample`` requests (drawn by ``rng`` without replacement) with ``score(inputs)``."""
    chosen = [r for r in requests if r.scores]
    if len(chosen) > sample:
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), size=sample, replace=False))]
    diffs: list[float] = []
    for request in chosen:
        replayed = np.asarray(score(wire_arrays(contract, request.features)), dtype=np.float64)
        diffs.extend(np.abs(replayed - np.asarray(request.scores, dtype=np.float64)).tolist())
    if not diffs:
        return ReplayResult(0, 0, 0.0, 0.0, ())
    return ReplayResult(len(chosen), len(diffs), max(diffs), float(np.mean(diffs)), tuple(diffs))

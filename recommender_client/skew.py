"""Skew analysis input: the rows the model scored online, read back from the served-list log.

The served log (``recommender_client.served_log``) holds, per served item, the exact feature
values of its Predict row and the score TF Serving returned; an offline job re-scores those rows
with the trained model and compares. This module only reads that log: there is no second,
separately sampled skew log any more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from recommender_client.jsonl_log import ReadStats, log_files, read_records


@dataclass
class SkewRows:
    """Column lists of the rows TF Serving scored: ``features[name][i]`` was sent and scored ``scores[i]``."""

    request_ids: list[str] = field(default_factory=list)
    model_versions: list[int | None] = field(default_factory=list)
    features: dict[str, list[Any]] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scores)


def read_skew_rows(path: str | os.PathLike[str], stats: ReadStats | None = None) -> SkewRows:
    """Every sent, scored row of a served log (all its rotated files), oldest first."""
    out = SkewRows()
    for record in read_records(log_files(path), stats, key="request_id"):
        names = list(record["features"])
        for k, sent in enumerate(record["sent"]):
            if not sent or record["scores"][k] is None:
                continue
            out.request_ids.append(record["request_id"])
            out.model_versions.append(record["model_version"])
            out.scores.append(float(record["scores"][k]))
            for name in names:
                out.features.setdefault(name, []).append(record["features"][name][k])
    return out

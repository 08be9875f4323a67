"""The served-list log: what each sampled request served and the exact model inputs, one JSON line each."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender_client.jsonl_log import JsonLinesLog, jsonable

RECORD_VERSION = 1


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request is logged: the first 8 bytes of blake2b(request id) below ``rate * 2**64``.

    Deterministic in the request id, so every replica (and a replay) keeps the same requests,
    and independent of what the request served, so a sample of the log is an unbiased sample.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < int(rate * 2**64)


@dataclass(frozen=True)
class ServedItem:
    """One served position: the item, its model score and propensity, and its row in the model inputs."""

    item_id: str
    position: int
    score: float | None
    propensity: float | None
    row: int | None  # index into the model inputs; None: never joined (an item a pin brought in)


class ServedLog(JsonLinesLog):
    """The rotating JSON-lines log of served lists, sampled by request id at ``rate``.

    A record (``v`` 1) holds ``request_id``, ``timestamp`` (the request's now), ``user_id``,
    ``model_name``/``model_version`` (as the model server's answer reported them; null when
    degraded), ``degraded``, ``rules_version``, and per served position, aligned lists
    ``items``, ``positions``, ``scores``, ``propensities``, ``sent`` (whether the row went to
    TF Serving) and ``features``: per contract feature, the value in the Predict request's row
    of that item (null for an item never joined). It replaces the 1% skew log: re-scoring
    ``features`` offline and comparing with ``scores`` measures online/offline skew
    (``recommender_client.skew``). Under an experiment, ``experiment``, ``arm`` (assigned by
    the user id) and ``served_arm`` (whose model scored the list: the stable arm after a
    canary fell back, null when degraded); all three null without one.
    """

    def __init__(self, path: Any, *, rate: float = 1.0, **kwargs: Any) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"ServedLog: rate must be in [0, 1], got {rate}")
        super().__init__(path, **kwargs)
        self.rate = rate

    def sampled(self, request_id: str) -> bool:
        return sampled(request_id, self.rate)

    def write(
        self,
        *,
        request_id: str,
        timestamp: float,
        user_id: str,
        model_name: str | None,
        model_version: int | None,
        items: Sequence[ServedItem],
        inputs: Mapping[str, np.ndarray] | None,
        degraded: bool,
        rules_version: str,
        experiment: str | None = None,
        arm: str | None = None,
        served_arm: str | None = None,
    ) -> None:
        """Queue one served list (the caller checked :meth:`sampled`)."""
        rows = [it.row for it in items]
        known = np.array([0 if r is None else r for r in rows], dtype=np.int64)
        features: dict[str, Any] = {}
        # numpy slices stay arrays here: the writer thread turns them into JSON (~0.3 ms a
        # record of 10 items x 40 features that the request would otherwise wait for)
        for name, col in (inputs or {}).items():
            values: Any = np.asarray(col)[known] if len(col) else np.full(len(rows), None, dtype=object)
            if None in rows:  # an item never joined (pinned in): no feature values
                values = [None if r is None else v for r, v in zip(rows, jsonable(values), strict=True)]
            features[name] = values
        self.append(
            {
                "v": RECORD_VERSION,
                "request_id": request_id,
                "timestamp": timestamp,
                "user_id": user_id,
                "model_name": model_name,
                "model_version": model_version,
                "degraded": degraded,
                "rules_version": rules_version,
                "experiment": experiment,
                "arm": arm,
                "served_arm": served_arm,
                "items": [it.item_id for it in items],
                "positions": [it.position for it in items],
                "scores": [jsonable(it.score) for it in items],
                "propensities": [jsonable(it.propensity) for it in items],
                "sent": [(not degraded) and r is not None for r in rows],
                "features": features,
            }
        )

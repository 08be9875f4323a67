"""Each row's user and item statistics from strictly earlier events: counts, smoothed like rates.

A practitioner's first features beside the ids: how often a user has rated before and how much
they liked it, how popular an item has been and how well it was received. Every value comes from
events with a smaller timestamp than the row (ties never see each other, as in ``history.py``),
so a row's own label, and any later one, never enters its features, whichever split the row
lands in; the value a test row gets is what a ranker could have known when it scored it. The
values are entity features (one per user, one per item at a time), so the recall artefacts
store each entity's newest value and the ranker serves them from its feature store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.data.base import DataError
from training.features import Entity

# Pseudo-events of the prior mixed into every rate: a user with 3 earlier ratings is mostly the
# prior, one with 100 mostly their own rate.
DEFAULT_SMOOTHING = 10.0
# The columns add_prior_stats writes with its default entities, and whose features they are.
# (the ``_rating`` ones only with ``rating``).
PRIOR_STAT_COLUMNS: dict[str, Entity] = {
    "user_prior_count": Entity.USER,
    "user_prior_like_rate": Entity.USER,
    "user_prior_rating": Entity.USER,
    "item_prior_count": Entity.ITEM,
    "item_prior_like_rate": Entity.ITEM,
    "item_prior_rating": Entity.ITEM,
}
# The prior before any event is known (the first rows of the log).
FIRST_PRIOR = 0.5


def prior_sums(keys: np.ndarray, times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the number and the sum of ``values`` over rows with its key and a smaller time.

    Rows sharing key and time form one group that sees none of its own members. ``values`` of
    shape ``[n, k]`` gives ``k`` sums per row (shape ``[n, k]``) from the one grouping.
    """
    values = np.asarray(values, dtype=np.float64)
    if not len(keys) == len(times) == len(values):
        raise DataError(f"prior sums: lengths differ ({len(keys)}, {len(times)}, {len(values)})")
    matrix = values.reshape(len(values), -1)
    names = [f"v{j}" for j in range(matrix.shape[1])]
    frame = pd.DataFrame({"key": keys, "time": times, **dict(zip(names, matrix.T, strict=True))})
    grouped = frame.groupby(["key", "time"], sort=True)
    groups = grouped[names].sum().assign(count=grouped.size())
    before = groups.groupby(level="key", sort=False).cumsum() - groups
    looked_up = before.reindex(pd.MultiIndex.from_arrays([frame["key"], frame["time"]]))
    sums = looked_up[names].to_numpy(dtype=np.float64)
    return looked_up["count"].to_numpy(dtype=np.float64), sums.reshape(values.shape)


def smoothed_rate(
    count: np.ndarray, total: np.ndarray, prior: np.ndarray | float, smoothing: float
) -> np.ndarray:
    """``(total + smoothing * prior) / (count + smoothing)``; the prior where nothing is known."""
    if smoothing <= 0:
        raise DataError(f"smoothing must be > 0, got {smoothing}")
    return (total + smoothing * np.asarray(prior, dtype=np.float64)) / (count + smoothing)


def add_prior_stats(
    frame: pd.DataFrame,
    *,
    entities: Sequence[tuple[str, str]] = (("user", "user_id"), ("item", "item_id")),
    label: str = "label",
    rating: str | None = None,
    timestamp: str = "timestamp",
    smoothing: float = DEFAULT_SMOOTHING,
) -> pd.DataFrame:
    """``frame`` with ``<prefix>_prior_count`` and ``<prefix>_prior_like_rate`` per entity.

    Args:
        frame: Events with the entity columns, a 0/1 ``label`` and an integer ``timestamp``.
        entities: (column prefix, id column) pairs.
        rating: A numeric column (MovieLens' stars) whose smoothed earlier mean becomes
            ``<prefix>_prior_rating``: a user's rating scale says more than the thresholded label.
        smoothing: Weight of the prior in each rate (pseudo-events). The prior is the mean of
            all strictly earlier events (before the first: ``FIRST_PRIOR`` for the like rate,
            the ``rating`` column's midrange for ratings), so it too uses nothing of the row or later.
    """
    needed = [label, timestamp, *(column for _, column in entities), *([rating] if rating else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"prior statistics: missing columns {missing}")
    times = frame[timestamp].to_numpy()
    targets = {"like_rate": (frame[label].to_numpy(dtype=np.float64), FIRST_PRIOR)}
    if rating:
        stars = frame[rating].to_numpy(dtype=np.float64)
        targets["rating"] = (stars, float(np.nanmin(stars) + np.nanmax(stars)) / 2)
    stacked = np.stack([values for values, _ in targets.values()], axis=1)
    every_count, every_sum = prior_sums(np.zeros(len(frame), np.int8), times, stacked)
    firsts = np.array([first for _, first in targets.values()])
    priors = np.where(every_count[:, None] > 0, every_sum / np.maximum(every_count, 1)[:, None], firsts)
    columns: dict[str, np.ndarray] = {}
    for prefix, column in entities:
        count, totals = prior_sums(frame[column].astype(str).to_numpy(), times, stacked)
        columns[f"{prefix}_prior_count"] = count.astype(np.float32)
        for j, name in enumerate(targets):
            rate = smoothed_rate(count, totals[:, j], priors[:, j], smoothing)
            columns[f"{prefix}_prior_{name}"] = rate.astype(np.float32)
    return frame.assign(**columns)

"""Each row's behaviour history: the user's items from strictly earlier events, most recent first.

This is what a ``sequence`` feature (``training.features.FeatureKind.SEQUENCE``) is trained on.
Only events with a smaller timestamp count, so two events in the same second never see each
other (no leakage from the row itself or its simultaneous neighbours), and the history a test
row gets is exactly what the ranker could know when it scored that impression.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

from training.data.base import DataError
from training.features import join_multi

HISTORY_COLUMN = "history"


def add_history(
    frame: pd.DataFrame,
    max_len: int,
    *,
    user: str = "user_id",
    item: str = "item_id",
    timestamp: str = "timestamp",
    only_positive: str | None = None,
    column: str = HISTORY_COLUMN,
) -> pd.DataFrame:
    """``frame`` with ``column``: ``|``-joined items of the user's strictly earlier events.

    Args:
        frame: Events with ``user``, ``item`` and an integer ``timestamp``; row order is kept.
        max_len: The most recent ``max_len`` items are kept (a repeat counts each time).
        only_positive: A 0/1 column (the label): only its positive events become history
            (clicks, not mere impressions). ``None`` takes every event (MovieLens: every rating
            is a watched film; the rating value itself is never used).
        column: Name of the new column.
    """
    if max_len < 1:
        raise DataError(f"history max_len must be >= 1, got {max_len}")
    needed = [c for c in (user, item, timestamp, only_positive) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"history: missing columns {missing}")
    users = frame[user].to_numpy()
    items = frame[item].astype(str).to_numpy()
    times = frame[timestamp].to_numpy()
    keep = np.ones(len(frame), bool) if only_positive is None else frame[only_positive].to_numpy() == 1
    order = np.lexsort((times, users))
    out = np.empty(len(frame), dtype=object)
    start = 0
    while start < len(order):
        stop = start
        recent: deque[str] = deque(maxlen=max_len)
        while stop < len(order) and users[order[stop]] == users[order[start]]:
            stop += 1
        i = start
        while i < stop:  # one user's events by time; equal timestamps share one history
            j = i
            while j < stop and times[order[j]] == times[order[i]]:
                j += 1
            text = join_multi(list(reversed(recent)))
            for row in order[i:j]:
                out[row] = text
            recent.extend(items[row] for row in order[i:j] if keep[row])
            i = j
        start = stop
    return frame.assign(**{column: out})

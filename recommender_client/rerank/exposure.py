"""Exposure log: which items each user was shown and when, for per-user frequency caps."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class ExposureLog(Protocol):
    """Records impressions and counts them; an in-process log by default, Redis or similar elsewhere."""

    def record(self, user_id: str, item_ids: Sequence[str], at: float) -> None: ...

    def count(self, user_id: str, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        """Impressions of each item for the user with ``since <= time <= until`` (int64 [N])."""
        ...


class InMemoryExposureLog:
    """Bounded in-process exposure log: the newest ``max_events_per_user`` impressions of the newest
    ``max_users`` users (least recently served users are forgotten first). Thread-safe."""

    def __init__(self, *, max_users: int = 100_000, max_events_per_user: int = 500) -> None:
        if max_users < 1 or max_events_per_user < 1:
            raise ValueError("InMemoryExposureLog: max_users and max_events_per_user must be >= 1")
        self.max_users = max_users
        self.max_events_per_user = max_events_per_user
        self._lock = threading.Lock()
        self._events: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()

    def record(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        with self._lock:
            events = self._events.get(user_id)
            if events is None:
                events = self._events[user_id] = deque(maxlen=self.max_events_per_user)
                while len(self._events) > self.max_users:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(user_id)
            for item in item_ids:
                events.append((at, item))

    def count(self, user_id: str, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        # One pass over at most max_events_per_user events (no sort: replays may log out of order).
        with self._lock:
            events = list(self._events.get(user_id, ()))
        counts = Counter(item for at, item in events if since <= at <= until)
        if not counts:
            return np.zeros(len(item_ids), dtype=np.int64)
        get = counts.get
        return np.fromiter((get(i, 0) for i in item_ids), dtype=np.int64, count=len(item_ids))

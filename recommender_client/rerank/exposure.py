"""Exposure log: which items each user was shown and when, for per-user frequency caps."""

from __future__ import annotations

import sys
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

# 64 MiB hold ~30,000 users with 100 impressions each (2.2 KB a user, measured with tracemalloc)
# or ~7,400 at the 500-event cap (9.0 KB); beyond that the least recently served go first.
# The old count-only bound (100,000 users x 500 events at ~67 bytes an event) let made-up user
# ids grow the log toward 3.4 GB.
DEFAULT_MAX_BYTES = 64 << 20
# A user not served for a day is forgotten: the default rules' longest frequency_cap period.
DEFAULT_TTL_S = 24 * 3600.0


class ExposureLog(Protocol):
    """Records impressions and counts them; an in-process log by default, Redis or similar elsewhere."""

    def record(self, user_id: str, item_ids: Sequence[str], at: float) -> None: ...

    def count(self, user_id: str, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        """Impressions of each item for the user with ``since <= time <= until`` (int64 [N])."""
        ...


class _User:
    """One user's impressions, oldest first: times (float64) and item-id hashes (int64), 16 bytes each."""

    __slots__ = ("times", "items", "touched", "size")

    def __init__(self) -> None:
        self.times = array("d")
        self.items = array("q")
        self.touched = 0.0
        self.size = 0


def _hashes(item_ids: Sequence[str]) -> np.ndarray:
    return np.fromiter(map(hash, item_ids), dtype=np.int64, count=len(item_ids))


class InMemoryExposureLog:
    """In-process exposure log bounded in bytes, in age and in events per user. Thread-safe.

    Each impression is 16 bytes: its time and the 64-bit ``hash()`` of the item id (the log
    lives and dies with the process, so the per-process hash seed does not matter; two ids
    collide with probability ~2**-64). Strings are never kept for items, so ids a client makes
    up cost no more than catalogue ids.

    ``accounted_bytes`` is ``sys.getsizeof`` of the user-id strings, the per-user objects and
    arrays (allocated capacity, not length) and the OrderedDict with its nodes; a test compares
    it with tracemalloc. When a record takes it over ``max_bytes``, or over ``max_users`` users,
    the least recently served users go first. A user not served for ``ttl_s`` seconds (server
    clock, never the request's ``now``, which a client chooses) is forgotten.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl_s: float = DEFAULT_TTL_S,
        max_users: int = 100_000,
        max_events_per_user: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_users < 1 or max_events_per_user < 1 or max_bytes < 1 or not ttl_s > 0:
            raise ValueError(
                "InMemoryExposureLog: max_bytes, max_users and max_events_per_user must be >= 1 "
                f"and ttl_s > 0, got {max_bytes}, {max_users}, {max_events_per_user}, {ttl_s}"
            )
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.max_users = max_users
        self.max_events_per_user = max_events_per_user
        self._clock = clock
        self._lock = threading.Lock()
        self._users: OrderedDict[str, _User] = OrderedDict()  # least recently served first
        self._user_bytes = 0  # the users' own objects; the dict is measured when asked
        self.evictions = {"ttl": 0, "budget": 0, "users": 0}

    @property
    def accounted_bytes(self) -> int:
        """Bytes the log holds by its own account (see the class docstring)."""
        with self._lock:
            return self._user_bytes + sys.getsizeof(self._users)

    def __len__(self) -> int:
        return len(self._users)

    def record(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        if not item_ids:
            return
        hashes = array("q", map(hash, item_ids))
        now = self._clock()
        with self._lock:
            self._expire(now)
            user = self._users.get(user_id)
            if user is None:
                user = self._users[user_id] = _User()
            else:
                self._users.move_to_end(user_id)
                self._user_bytes -= user.size
            user.touched = now
            user.items.extend(hashes)
            user.times.extend(array("d", (at,)) * len(hashes))
            excess = len(user.items) - self.max_events_per_user
            if excess > 0:
                del user.items[:excess]
                del user.times[:excess]
            size = (
                sys.getsizeof(user_id)
                + sys.getsizeof(user)
                + sys.getsizeof(user.touched)
                + sys.getsizeof(user.items)
                + sys.getsizeof(user.times)
            )
            user.size = size + sys.getsizeof(size)  # the int object holding the size, too
            self._user_bytes += user.size
            self._shrink()

    def _expire(self, now: float) -> None:
        """Forget users not served within ``ttl_s`` (they are at the front: oldest touch first)."""
        users = self._users
        while users:
            oldest = next(iter(users.values()))
            if now - oldest.touched <= self.ttl_s:
                return
            self._pop("ttl")

    def _shrink(self) -> None:
        while len(self._users) > self.max_users:
            self._pop("users")
        while self._users and self._user_bytes + sys.getsizeof(self._users) > self.max_bytes:
            self._pop("budget")

    def _pop(self, reason: str) -> None:
        _, user = self._users.popitem(last=False)
        self._user_bytes -= user.size
        self.evictions[reason] += 1

    def count(self, user_id: str, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        n = len(item_ids)
        with self._lock:
            user = self._users.get(user_id)
            if user is None or self._clock() - user.touched > self.ttl_s:
                return np.zeros(n, dtype=np.int64)
            times = np.array(user.times, dtype=np.float64)
            logged = np.array(user.items, dtype=np.int64)
        # No sort by time: replays may log out of order, so every event is looked at.
        shown = logged[(times >= since) & (times <= until)]
        if not shown.size or not n:
            return np.zeros(n, dtype=np.int64)
        distinct, counts = np.unique(shown, return_counts=True)
        wanted = _hashes(item_ids)
        at = np.minimum(np.searchsorted(distinct, wanted), len(distinct) - 1)
        return np.where(distinct[at] == wanted, counts[at], 0).astype(np.int64)

"""In-process per-user log: impressions (for frequency caps) and clicks (seen filter, item-CF seeds)."""

from __future__ import annotations

import sys
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from recommender_client.state.protocol import UserState, count_matches, item_hashes

# 64 MiB hold ~30,000 users with 100 impressions each (2.2 KB a user, measured with tracemalloc)
# or ~7,400 at the 500-event cap (9.0 KB); beyond that the least recently served go first.
# The old count-only bound (100,000 users x 500 events at ~67 bytes an event) let made-up user
# ids grow the log toward 3.4 GB.
DEFAULT_MAX_BYTES = 64 << 20
# A user not served for a day is forgotten: the default rules' longest frequency_cap period.
DEFAULT_TTL_S = 24 * 3600.0


class ExposureLog(Protocol):
    """Records impressions and counts them (the synchronous face of the in-process store)."""

    def record(self, user_id: str, item_ids: Sequence[str], at: float) -> None: ...

    def count(self, user_id: str, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        """Impressions of each item for the user with ``since <= time <= until`` (int64 [N])."""
        ...


class _User:
    """One user's impressions, oldest first: times (float64) and item-id hashes (int64), 16 bytes
    each; and clicked item ids (each once, oldest click first) with their newest click times."""

    __slots__ = ("times", "items", "clicked", "click_times", "touched", "size")

    def __init__(self) -> None:
        self.times = array("d")
        self.items = array("q")
        self.clicked: list[str] = []
        self.click_times = array("d")
        self.touched = 0.0
        self.size = 0

    def measure(self, user_id: str) -> int:
        """``sys.getsizeof`` of everything the user holds, the clicked ids' strings included."""
        size = (
            sys.getsizeof(user_id)
            + sys.getsizeof(self)
            + sys.getsizeof(self.touched)
            + sys.getsizeof(self.items)
            + sys.getsizeof(self.times)
            + sys.getsizeof(self.clicked)
            + sys.getsizeof(self.click_times)
            + sum(map(sys.getsizeof, self.clicked))
        )
        return size + sys.getsizeof(size)  # the int object holding the size, too


class InMemoryExposureLog:
    """In-process impressions and clicks, bounded in bytes, in age and in events per user. Thread-safe.

    Each impression is 16 bytes: its time and the 64-bit ``hash()`` of the item id (the log
    lives and dies with the process, so the per-process hash seed does not matter; two ids
    collide with probability ~2**-64). Strings are never kept for impressions, so ids a client
    makes up cost no more than catalogue ids. Clicks keep the item ids (item-CF seeds are
    catalogue ids): at most ``max_clicks_per_user`` distinct items a user, strings counted.

    ``accounted_bytes`` is ``sys.getsizeof`` of the user-id strings, the per-user objects and
    arrays (allocated capacity, not length) and the OrderedDict with its nodes; a test compares
    it with tracemalloc. When a record takes it over ``max_bytes``, or over ``max_users`` users,
    the least recently served users go first. A user not recorded for ``ttl_s`` seconds (server
    clock, never the request's ``now``, which a client chooses) is forgotten.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl_s: float = DEFAULT_TTL_S,
        max_users: int = 100_000,
        max_events_per_user: int = 500,
        max_clicks_per_user: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(max_users, max_events_per_user, max_clicks_per_user, max_bytes) < 1 or not ttl_s > 0:
            raise ValueError(
                "InMemoryExposureLog: max_bytes, max_users, max_events_per_user and max_clicks_per_user "
                f"must be >= 1 and ttl_s > 0, got {max_bytes}, {max_users}, {max_events_per_user}, "
                f"{max_clicks_per_user}, {ttl_s}"
            )
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.max_users = max_users
        self.max_events_per_user = max_events_per_user
        self.max_clicks_per_user = max_clicks_per_user
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
        """Log one impression of each of ``item_ids`` at ``at`` (the request's time)."""
        if not item_ids:
            return
        hashes = array("q", map(hash, item_ids))
        with self._lock:
            user = self._touch(user_id)
            user.items.extend(hashes)
            user.times.extend(array("d", (at,)) * len(hashes))
            excess = len(user.items) - self.max_events_per_user
            if excess > 0:
                del user.items[:excess]
                del user.times[:excess]
            self._resize(user_id, user)

    def record_clicks(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        """Log clicks: each item moves to the newest end, with the later of its old time and ``at``."""
        if not item_ids:
            return
        with self._lock:
            user = self._touch(user_id)
            for item in item_ids:
                t = at
                if item in user.clicked:
                    k = user.clicked.index(item)
                    t = max(t, user.click_times[k])
                    del user.clicked[k]
                    del user.click_times[k]
                user.clicked.append(item)
                user.click_times.append(t)
            excess = len(user.clicked) - self.max_clicks_per_user
            if excess > 0:
                del user.clicked[:excess]
                del user.click_times[:excess]
            self._resize(user_id, user)

    def _touch(self, user_id: str) -> _User:
        """The user's record (created if new), moved to the most recently served end."""
        now = self._clock()
        self._expire(now)
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
        else:
            self._users.move_to_end(user_id)
            self._user_bytes -= user.size
        user.touched = now
        return user

    def _resize(self, user_id: str, user: _User) -> None:
        user.size = user.measure(user_id)
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

    def _live(self, user_id: str) -> _User | None:
        """The user's record unless absent or idle past the TTL (even before a sweep)."""
        user = self._users.get(user_id)
        if user is None or self._clock() - user.touched > self.ttl_s:
            return None
        return user

    def count(self, user_id: str, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        with self._lock:
            user = self._live(user_id)
            if user is None:
                return np.zeros(len(item_ids), dtype=np.int64)
            times = np.array(user.times, dtype=np.float64)
            logged = np.array(user.items, dtype=np.int64)
        return count_matches(logged, times, item_hashes(item_ids), since=since, until=until)

    def read(self, user_id: str, *, impressions_since: float) -> UserState:
        """The user's state: impressions at or after ``impressions_since``, clicks newest first."""
        with self._lock:
            user = self._live(user_id)
            if user is None:
                return UserState()
            times = np.array(user.times, dtype=np.float64)
            logged = np.array(user.items, dtype=np.int64)
            clicked = tuple(reversed(user.clicked))
            click_times = np.array(user.click_times, dtype=np.float64)[::-1].copy()
        keep = times >= impressions_since
        return UserState(logged[keep], times[keep], clicked, click_times)

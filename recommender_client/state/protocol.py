"""The async protocol of the online state and the per-request snapshot the pipeline reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def item_hashes(item_ids: Sequence[str]) -> np.ndarray:
    """64-bit ``hash()`` of each item id (int64 [N]): how impressions are compared in process.

    The per-process hash seed does not matter: hashes are made and compared in one process
    (Redis keeps the ids themselves and they are hashed when read back).
    """
    return np.fromiter(map(hash, item_ids), dtype=np.int64, count=len(item_ids))


def count_matches(
    logged: np.ndarray, times: np.ndarray, wanted: np.ndarray, *, since: float, until: float
) -> np.ndarray:
    """How often each ``wanted`` hash occurs in ``logged`` at ``since <= times <= until`` (int64 [N]).

    No sort by time: replays may log out of order, so every event is looked at.
    """
    n = len(wanted)
    shown = logged[(times >= since) & (times <= until)]
    if not shown.size or not n:
        return np.zeros(n, dtype=np.int64)
    distinct, counts = np.unique(shown, return_counts=True)
    at = np.minimum(np.searchsorted(distinct, wanted), len(distinct) - 1)
    return np.where(distinct[at] == wanted, counts[at], 0).astype(np.int64)


@dataclass(frozen=True)
class UserState:
    """One user's online state as read once at the start of a request.

    The pipeline's stages are synchronous and a store may be remote, so a request reads
    everything it needs in one call (one Redis round trip) before the pipeline runs; the seen
    filter, the frequency caps and item-CF's seeds then read this snapshot.

    Attributes:
        impression_items: ``item_hashes`` of the impressions read (int64 [M], any order).
        impression_times: their times (float64 [M], the ``at`` they were recorded with).
        clicked: clicked item ids, newest click first, each once.
        click_times: the newest click time of each (float64, aligned with ``clicked``).
    """

    impression_items: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    impression_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    clicked: tuple[str, ...] = ()
    click_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def exposures(self, item_ids: Sequence[str], *, since: float, until: float) -> np.ndarray:
        """Impressions of each item with ``since <= time <= until`` (int64 [N])."""
        return count_matches(
            self.impression_items, self.impression_times, item_hashes(item_ids), since=since, until=until
        )

    def clicked_since(self, since: float) -> set[str]:
        """Items clicked at or after ``since``."""
        return {item for item, t in zip(self.clicked, self.click_times.tolist(), strict=True) if t >= since}


EMPTY_STATE = UserState()


class OnlineState(Protocol):
    """Per-user impressions and clicks, shared by every ranker process that uses the same store.

    Times (``at``) are the request's or event's epoch seconds, the clock the rules evaluate
    windows against; how long a store keeps an idle user is its own (server-clock) TTL.
    Implementations: ``InProcessState`` (the default, bounded in bytes) and ``RedisState``.
    """

    async def record_impressions(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        """The items were shown to the user at ``at`` (each occurrence counts once)."""
        ...

    async def record_clicks(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        """The user clicked the items at ``at``; they become seen and item-CF seeds at once."""
        ...

    async def exposures(
        self, user_id: str, item_ids: Sequence[str], *, since: float, until: float
    ) -> np.ndarray:
        """Impressions of each item with ``since <= time <= until`` (int64 [N])."""
        ...

    async def seen(self, user_id: str, *, since: float = float("-inf")) -> set[str]:
        """Items the user clicked at or after ``since``."""
        ...

    async def recent_clicks(self, user_id: str, n: int) -> list[str]:
        """Up to ``n`` clicked items, newest first, each once."""
        ...

    async def snapshot(self, user_id: str, *, impressions_since: float) -> UserState:
        """Everything a request reads, in one call: impressions at or after ``impressions_since``
        and the kept clicks."""
        ...

    async def aclose(self) -> None:
        """Release connections (nothing for the in-process store)."""
        ...

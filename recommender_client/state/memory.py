"""The in-process online state: the async protocol over the byte-bounded ``InMemoryExposureLog``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.state.protocol import UserState


class InProcessState:
    """``OnlineState`` held in this process (the default): nothing is shared between processes.

    Every call is synchronous under the log's lock (microseconds), so the coroutines never
    suspend; ``log`` is also reachable directly for the blocking pipeline path and the metrics.
    """

    shared = False

    def __init__(self, log: InMemoryExposureLog | None = None) -> None:
        self.log = log if log is not None else InMemoryExposureLog()

    async def record_impressions(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        self.log.record(user_id, item_ids, at)

    async def record_clicks(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        self.log.record_clicks(user_id, item_ids, at)

    async def exposures(
        self, user_id: str, item_ids: Sequence[str], *, since: float, until: float
    ) -> np.ndarray:
        return self.log.count(user_id, item_ids, since=since, until=until)

    async def seen(self, user_id: str, *, since: float = float("-inf")) -> set[str]:
        return self.log.read(user_id, impressions_since=float("inf")).clicked_since(since)

    async def recent_clicks(self, user_id: str, n: int) -> list[str]:
        return list(self.log.read(user_id, impressions_since=float("inf")).clicked[:n])

    async def snapshot(self, user_id: str, *, impressions_since: float) -> UserState:
        return self.log.read(user_id, impressions_since=impressions_since)

    async def aclose(self) -> None:
        return None

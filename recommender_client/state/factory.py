"""The online state the settings ask for: in process (the default) or in Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.state.memory import InProcessState
from recommender_client.state.protocol import OnlineState

if TYPE_CHECKING:
    from recommender_client.service.settings import Settings


def build_online_state(settings: Settings, log: InMemoryExposureLog | None = None) -> OnlineState:
    """``InProcessState`` (over ``log`` if given, else a log sized by the exposure settings) or
    ``RedisState`` at ``redis_url``; no connection is opened here (Redis connects on first use).

    ``exposure_ttl_s`` and ``exposure_max_events_per_user`` mean the same for both backends: how
    long an idle user is kept and how many newest impressions a user keeps.

    Raises:
        ValueError: ``state_backend`` is neither ``memory`` nor ``redis`` (Settings refuses it
            already; this guards a hand-built settings object).
    """
    backend = settings.state_backend
    if backend == "memory":
        if log is None:
            log = InMemoryExposureLog(
                max_bytes=settings.exposure_max_bytes,
                ttl_s=settings.exposure_ttl_s,
                max_users=settings.exposure_max_users,
                max_events_per_user=settings.exposure_max_events_per_user,
            )
        return InProcessState(log)
    if backend == "redis":
        from recommender_client.state.redis import RedisState  # redis-py only when asked for

        return RedisState.from_url(
            settings.redis_url,
            ttl_s=settings.exposure_ttl_s,
            timeout_s=settings.redis_timeout_s,
            max_connections=settings.redis_max_connections,
            max_events_per_user=settings.exposure_max_events_per_user,
        )
    raise ValueError(f"state_backend must be 'memory' or 'redis', got {backend!r}")

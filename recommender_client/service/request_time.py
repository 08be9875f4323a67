"""When a request is ranked, and the exploration generator it draws from: one rule for /recommend and the console."""

from __future__ import annotations

import time
import zlib

import numpy as np

from recommender_client.service.settings import Settings


def request_now(given: float | None, settings: Settings) -> float:
    """The epoch seconds a request is ranked at: its own ``now``, else the settings' fixed clock
    (replays, tests), else the wall clock."""
    if given is not None:
        return given
    return settings.fixed_now if settings.fixed_now is not None else time.time()


def exploration_rng(seed: int, user_id: str, now: float) -> np.random.Generator:
    """The generator a request draws exploration from: the same user at the same second draws
    the same, so an answer can be reproduced (and previewed) exactly."""
    return np.random.default_rng([seed, zlib.crc32(user_id.encode()), int(now)])

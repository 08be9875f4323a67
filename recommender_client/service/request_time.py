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


def exploration_seed(seed: int, user_id: str, now: float) -> tuple[int, int, int]:
    """The entropy a request's exploration generator is seeded with: the same user at the same
    second draws the same, so an answer can be reproduced (and previewed) exactly.

    /recommend passes this as ``RankRequest.seed`` rather than a generator: an exploration
    rule builds ``default_rng(seed)`` only when it draws, so the ~10 us a generator costs is
    not paid by the requests whose rules do not explore.
    """
    return (seed, zlib.crc32(user_id.encode()), int(now))


def exploration_rng(seed: int, user_id: str, now: float) -> np.random.Generator:
    """The generator :func:`exploration_seed` seeds (the one an exploration rule draws from)."""
    return np.random.default_rng(exploration_seed(seed, user_id, now))

"""Context features derived from an event's time: one definition for training data and the ranking service.

Training derives ``hour`` from each logged event's timestamp; the service must derive it from the
request's ``now`` with exactly the same arithmetic, or a caller who omits it sends a value (the
contract default, -1) the model never saw. Both sides call :func:`derive_time_context`. The module
imports only numpy, so the TensorFlow-free ranking service can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24


def hour_of_day(timestamp: np.ndarray | float | int) -> np.ndarray:
    """UTC hour of day (0-23, int64) of epoch seconds, shape preserved.

    UTC because the logs carry epoch seconds without a zone; floor division, so a fractional
    ``now`` (the service's float seconds) falls in the hour its integer second does and a time
    before 1970 still maps into 0-23.
    """
    seconds = np.floor_divide(np.asarray(timestamp), SECONDS_PER_HOUR)
    return np.mod(seconds, HOURS_PER_DAY).astype(np.int64)


# context feature name -> how it is computed from epoch seconds (vectorised)
TIME_DERIVED: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {"hour": hour_of_day}


def derive_time_context(timestamp: np.ndarray | float | int, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The time-derived features among ``names``, computed from ``timestamp`` (others are skipped)."""
    ts = np.asarray(timestamp)
    return {name: TIME_DERIVED[name](ts) for name in names if name in TIME_DERIVED}

"""Time-derived context: hand-computed UTC hours, and the training data uses the very same function."""

from __future__ import annotations

import datetime as dt

import numpy as np

from training.context_features import derive_time_context, hour_of_day
from training.data.synthetic import generate_events
from training.data.synthetic_world import SyntheticConfig


def test_hour_of_day_by_hand() -> None:
    seconds = np.array([0, 3599, 3600, 86_399, 86_400, -1, 1_700_000_000], dtype=np.int64)
    assert hour_of_day(seconds).tolist() == [0, 0, 1, 23, 0, 23, 22]  # 1_700_000_000 is 22:13:20Z
    assert hour_of_day(1_700_000_000.9).item() == 22  # a float now falls in its second's hour
    assert hour_of_day(seconds).dtype == np.int64
    assert derive_time_context(3600 * 5, ["device", "hour"]).keys() == {"hour"}


def test_synthetic_events_hour_is_the_utc_hour_of_their_timestamp() -> None:
    config = SyntheticConfig(num_rows=2_000, seed=3, num_users=50, num_items=40, num_categories=4, days=3.0)
    events = generate_events(config)
    utc = [dt.datetime.fromtimestamp(int(t), dt.UTC).hour for t in events["timestamp"]]
    assert events["hour"].tolist() == utc  # independent route: the calendar, not the arithmetic
    assert len(set(utc)) == 24

"""NDCG@k/HR@k: users with k or fewer rows are counted apart, and the report states the protocol."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import metrics as m
from training import report
from training.evaluate import evaluate_predictions

# k = 2. a: 2 rows, its click ranked 2nd (HR 1 by construction); b: 4 rows, click ranked 4th;
# c: 3 rows, click ranked 2nd; d: no click (skipped).
USERS = np.array(["a", "a", "b", "b", "b", "b", "c", "c", "c", "d"])
LABELS = np.array([1, 0, 0, 0, 1, 0, 1, 0, 0, 0])
SCORES = np.array([0.1, 0.9, 0.9, 0.8, 0.1, 0.5, 0.2, 0.9, 0.1, 0.3])
SECOND = 1 / math.log2(3)  # NDCG of a single click at rank 2


def test_short_users_are_counted_apart_hand_computed() -> None:
    quality = m.ranking_quality(LABELS, SCORES, USERS, k=2)
    assert (quality.users, quality.users_skipped, quality.short_users, quality.long_users) == (3, 1, 1, 2)
    assert quality.hit_rate == pytest.approx(2 / 3)
    assert quality.ndcg == pytest.approx(2 * SECOND / 3)
    assert quality.long_hit_rate == pytest.approx(1 / 2)  # b misses, c hits
    assert quality.long_ndcg == pytest.approx(SECOND / 2)

    # at k = 4 every user is short: there is nothing to report for the long users
    wide = m.ranking_quality(LABELS, SCORES, USERS, k=4)
    assert (wide.short_users, wide.long_users, wide.long_ndcg, wide.long_hit_rate) == (3, 0, None, None)
    assert wide.hit_rate == 1.0


def test_short_users_get_hit_rate_one_whatever_the_scores() -> None:
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(40), rng.integers(1, 25, 40))
    labels = (rng.random(users.shape[0]) < 0.3).astype(int)
    rows = np.bincount(users)
    for _ in range(3):
        scores = rng.random(users.shape[0])
        quality = m.ranking_quality(labels, scores, users, k=10)
        has_click = np.bincount(users, weights=labels) > 0
        assert quality.short_users == int((has_click & (rows <= 10)).sum())
        assert quality.long_users == int((has_click & (rows > 10)).sum())
        # the overall mean mixes 1.0 (each short user) and the long users' mean, one weight per user
        mixed = (quality.short_users + quality.long_users * quality.long_hit_rate) / quality.users
        assert quality.hit_rate == pytest.approx(mixed)


def test_evaluation_report_states_the_protocol_and_the_long_user_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user_id": USERS, "label": LABELS})
    result = evaluate_predictions(frame, SCORES, k=2)
    assert result["ranking_short_users"] == 1
    assert result["hit_rate_long"] == pytest.approx(0.5)
    assert result["ndcg_long"] == pytest.approx(SECOND / 2)

    paths = report.write_report({"lr": [result]}, tmp_path)
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "rank each user's logged impressions in this split only" in text
    assert "1 of the 3 users with a click have 2 or fewer rows" in text
    header, _, row = text.split("| Model |", 1)[1].splitlines()[:3]
    assert "NDCG@2 >2 rows" in header and "HR@2 >2 rows" in header
    assert "| 0.5000 |" in row and f"| {SECOND / 2:.4f} |" in row

    no_users = evaluate_predictions(frame.drop(columns="user_id"), SCORES, k=2)
    assert no_users["ndcg_long"] is None and no_users["hit_rate_long"] is None
    assert "ranking_protocol" not in report.compare({"lr": [no_users]})

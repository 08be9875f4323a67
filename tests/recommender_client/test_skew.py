"""Skew log: seeded sampling, record contents, size-capped rotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommender_client.skew import SkewLogger, read_skew_log


def test_sampling_is_seeded_and_follows_the_rate(tmp_path: Path) -> None:
    a = SkewLogger(tmp_path / "a.jsonl", rate=0.25, seed=7)
    b = SkewLogger(tmp_path / "b.jsonl", rate=0.25, seed=7)
    draws_a = [a.sample() for _ in range(400)]
    assert draws_a == [b.sample() for _ in range(400)]
    expected = (np.random.default_rng(7).random(400) < 0.25).tolist()
    assert draws_a == expected
    assert not any(SkewLogger(tmp_path / "c", rate=0.0).sample() for _ in range(50))
    with pytest.raises(ValueError, match="rate must be in \\[0, 1\\]"):
        SkewLogger(tmp_path / "d", rate=1.5)


def write_one(log: SkewLogger, k: int) -> None:
    log.write(
        timestamp=float(k),
        user_id=f"u{k}",
        model="m",
        items=["a", "b"],
        inputs={"x": np.array([1.5, 2.5], np.float32), "s": np.array(["p", "q"], dtype=object)},
        scores=np.array([0.25, 0.5], np.float32),
    )


def test_records_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "skew" / "log.jsonl"
    log = SkewLogger(path, rate=1.0, max_bytes=400, backups=2)
    write_one(log, 0)
    (record,) = read_skew_log(path)
    assert record == {
        "timestamp": 0.0,
        "user_id": "u0",
        "model": "m",
        "items": ["a", "b"],
        "features": {"x": [1.5, 2.5], "s": ["p", "q"]},
        "scores": [0.25, 0.5],
    }
    line = path.stat().st_size
    per_file = 400 // line
    for k in range(1, 4 * per_file):
        write_one(log, k)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["log.jsonl", "log.jsonl.1", "log.jsonl.2"]  # older ones dropped
    for name in files:
        assert (path.parent / name).stat().st_size <= 400
    newest = [r["user_id"] for r in read_skew_log(path)]
    previous = [r["user_id"] for r in read_skew_log(path.parent / "log.jsonl.1")]
    assert newest[-1] == f"u{4 * per_file - 1}"
    assert int(previous[-1][1:]) + 1 == int(newest[0][1:])  # no record lost between the two newest files

"""Served-list log: records as hand-computed, request-id sampling, rotation, crash-safe reading; propensities."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from recommender_client.jsonl_log import ReadStats, log_files, read_records
from recommender_client.pipeline import RankRequest
from recommender_client.ranking import LocalScorer
from recommender_client.recommender import RecallConfig, Recommender
from recommender_client.rerank.reload import RuleBook
from recommender_client.served_log import ServedItem, ServedLog, sampled
from recommender_client.skew import read_skew_rows
from tests.recommender_client.conftest import T

QUOTAS = {"itemcf": 2, "category_popularity": 2, "new": 1, "popularity": 10}


def sigmoid_log1p(pop: float) -> float:
    return 1.0 / (1.0 + math.exp(-math.log1p(pop)))


def make(contract, artifacts, **kwargs) -> Recommender:
    return Recommender(
        contract=contract,
        artifacts=artifacts,
        scorer=LocalScorer(artifacts.popularity_of(), intercept=0.0, slope=1.0),
        recall=RecallConfig(quotas=QUOTAS, max_candidates=10),
        **kwargs,
    )


def test_served_list_record_holds_the_served_rows(tmp_path: Path, contract, loaded) -> None:
    log = ServedLog(tmp_path / "served.jsonl", rate=1.0).start()
    rec = make(contract, loaded, served_log=log)
    rec.recommend(RankRequest(user_id="u2", k=2, now=T, context={"device": "ios"}, request_id="r-1"))
    rec.recommend(RankRequest(user_id="u2", k=2, now=T, deadline=0.0, request_id="r-2"))  # degraded
    log.close()
    first, second = read_records(log_files(tmp_path / "served.jsonl"))
    # popularity i2 2.0 > i3 1.0 (ties with i6 keep recall order i3 first)
    assert first["request_id"] == "r-1" and first["items"] == ["i2", "i3"] and first["positions"] == [0, 1]
    assert first["timestamp"] == T and first["user_id"] == "u2" and first["degraded"] is False
    assert first["model_name"] is None and first["model_version"] is None  # a LocalScorer reports none
    assert first["features"]["price"] == [2.0, 3.0] and first["features"]["device"] == ["ios", "ios"]
    assert first["features"]["item_id"] == ["i2", "i3"] and first["features"]["age"] == [40.0, 40.0]
    assert first["features"]["hour"] == [22, 22]  # 1_700_000_000 is 22:13 UTC
    np.testing.assert_allclose(first["scores"], [sigmoid_log1p(2.0), sigmoid_log1p(1.0)], rtol=1e-6)
    assert first["propensities"] == [1.0, 1.0] and first["sent"] == [True, True]
    assert (
        second["degraded"] is True and second["scores"] == [None, None] and second["sent"] == [False, False]
    )
    rows = read_skew_rows(tmp_path / "served.jsonl")  # the skew reader keeps only what was scored
    assert rows.request_ids == ["r-1", "r-1"] and rows.features["price"] == [2.0, 3.0]


def test_sampling_is_a_hash_of_the_request_id() -> None:
    ids = [f"req-{k}" for k in range(4000)]
    kept = [sampled(i, 0.25) for i in ids]
    by_hand = [
        int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") < 2**62 for i in ids
    ]
    assert kept == by_hand and 900 < sum(kept) < 1100
    assert all(sampled(i, 1.0) for i in ids[:50]) and not any(sampled(i, 0.0) for i in ids[:50])
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        ServedLog("x", rate=1.5)


def write(log: ServedLog, k: int) -> None:
    log.write(
        request_id=f"r{k}",
        timestamp=float(k),
        user_id="u",
        model_name="ctr",
        model_version=3,
        items=[ServedItem("a", 0, 0.5, 1.0, 0), ServedItem("pinned", 1, float("nan"), 1.0, None)],
        inputs={"x": np.array([1.5], np.float32), "s": np.array(["p"], dtype=object)},
        degraded=False,
        rules_version="v",
    )


def test_rotation_keeps_backups_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log" / "served.jsonl"
    log = ServedLog(path, max_bytes=2000, backups=2).start()
    for k in range(60):
        write(log, k)
    log.close()
    files = log_files(path)
    assert [f.name for f in files] == ["served.jsonl.2", "served.jsonl.1", "served.jsonl"]
    assert all(f.stat().st_size <= 2000 for f in files)
    with path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"request_id": "r60", "items": ["a"')
    stats = ReadStats()
    records = list(read_records(files, stats, key="request_id"))
    numbers = [int(r["request_id"][1:]) for r in records]
    assert numbers == list(range(numbers[0], 60))  # consecutive up to the newest: nothing lost between files
    assert stats.truncated == 1 and stats.corrupt == 0 and stats.records == len(records)
    last = records[-1]
    assert last["features"] == {"x": [1.5, None], "s": ["p", None]} and last["scores"] == [0.5, None]
    assert last["sent"] == [True, False]
    assert json.loads(path.read_text().splitlines()[0])["model_version"] == 3


def test_exploration_propensity_is_one_over_the_pool(tmp_path: Path, contract, loaded) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{name: explore, type: exploration, slots: [1]}]\n")
    rec = make(contract, loaded, rules=RuleBook(rules, min_interval_s=0))
    # model order i2, i3, i6, i1, i5: the top 2 are i2, i3 and the pool beyond them is i6, i1, i5
    for seed in range(6):
        batch, _ = rec.recommend(RankRequest(user_id="u2", k=2, now=T, rng=np.random.default_rng(seed)))
        assert batch.items[0] == "i2" and batch.items[1] in {"i6", "i1", "i5"}
        np.testing.assert_allclose(batch.columns["propensity"], [1.0, 1 / 3])
    rules.write_text(
        "rules: [{name: explore, type: exploration, slots: [1]}, {name: p4, type: pin, item: i4, position: 0}]\n"
    )
    os.utime(rules, ns=(time.time_ns() + 10**9,) * 2)
    batch, _ = rec.recommend(RankRequest(user_id="u2", k=3, now=T, rng=np.random.default_rng(0)))
    # k=3: the pool is i1, i5 (2 items); the pin brings i4 from the catalogue to position 0
    assert batch.items[0] == "i4" and batch.items[1] == "i2" and batch.items[2] in {"i1", "i5"}
    np.testing.assert_allclose(batch.columns["propensity"], [1.0, 1.0, 0.5])
    rules.write_text(
        "rules: [{name: explore, type: exploration, slots: [1]}, {name: p1, type: pin, item: i1, position: 0}]\n"
    )
    os.utime(rules, ns=(time.time_ns() + 2 * 10**9,) * 2)
    batch, _ = rec.recommend(RankRequest(user_id="u2", k=2, now=T, rng=np.random.default_rng(0)))
    # i1 is pinned and in the pool: whether it was drawn moves the others, so nothing is claimed
    assert batch.items[0] == "i1" and np.isnan(batch.columns["propensity"]).all()

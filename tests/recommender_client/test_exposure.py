"""The exposure log's memory budget, time-based eviction and its size metric under made-up user ids."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.service.app import create_app
from tests.recommender_client.test_pipeline import FakeClock
from tests.recommender_client.test_service import settings_for

REPO = Path(__file__).resolve().parents[2]
ITEMS = [f"item-{i}" for i in range(1000)]


def test_users_not_served_within_the_ttl_are_forgotten() -> None:
    clock = FakeClock()
    log = InMemoryExposureLog(ttl_s=100, clock=clock)
    log.record("u1", ["a", "a"], at=5.0)
    clock.now = 50
    log.record("u2", ["b"], at=6.0)
    clock.now = 100  # u1 last served 100 s ago: still within the TTL
    assert log.count("u1", ["a", "b"], since=0, until=10).tolist() == [2, 0]
    clock.now = 120
    assert log.count("u1", ["a"], since=0, until=10).tolist() == [0]  # expired, even before a sweep
    log.record("u3", ["c"], at=7.0)  # a record sweeps the expired users out
    assert len(log) == 2 and log.evictions == {"ttl": 1, "budget": 0, "users": 0}
    log.record("u2", ["b"], at=8.0)  # serving u2 again renews it
    clock.now = 200
    assert log.count("u2", ["b"], since=0, until=10).tolist() == [2]
    clock.now = 260
    log.record("u4", ["d"], at=9.0)
    assert len(log) == 1 and log.evictions["ttl"] == 3  # u3 (t=120) and u2 (t=120) went


def test_the_request_clock_cannot_keep_users_alive() -> None:
    """``at`` is the request's ``now`` (a client's choice); eviction runs on the server clock."""
    clock = FakeClock()
    log = InMemoryExposureLog(ttl_s=10, clock=clock)
    log.record("u1", ["a"], at=1e12)
    clock.now = 11
    log.record("u2", ["a"], at=1e12)
    assert len(log) == 1 and log.count("u1", ["a"], since=0, until=2e12).tolist() == [0]


def test_made_up_user_ids_stay_under_the_budget_by_its_account_and_tracemalloc() -> None:
    budget = 1 << 20
    log = InMemoryExposureLog(max_bytes=budget, max_users=10**9)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for u in range(20_000):
            log.record(f"made-up-{u:08d}", ITEMS[u % 980 : u % 980 + 20], at=1.7e9)
            if u % 1000 == 999:
                assert log.accounted_bytes <= budget
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 20 impressions are 320 bytes of data and ~480 of objects: about 1,300 users fit in 1 MiB
    assert 1_000 <= len(log) <= 1_600
    assert log.evictions["budget"] == 20_000 - len(log)
    assert abs(grown - log.accounted_bytes) <= 0.05 * log.accounted_bytes  # the estimate is honest
    assert grown <= budget * 1.05
    newest = f"made-up-{19_999:08d}"
    assert log.count(newest, ITEMS[398:401], since=0, until=2e9).tolist() == [0, 1, 1]


FLOOD = """
import json, sys
from recommender_client.rerank.exposure import InMemoryExposureLog

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

items = [f"item-{i}" for i in range(1000)]
log = InMemoryExposureLog(max_bytes=int(sys.argv[1]), max_users=10**9)
log.record("warm-up", items[:20], 1.0)
before = rss()
for u in range(300_000):
    log.record(f"made-up-{u:08d}", items[u % 980 : u % 980 + 20], 1.7e9)
print(json.dumps({"grown": rss() - before, "accounted": log.accounted_bytes, "users": len(log)}))
"""


def test_a_flood_of_user_ids_keeps_resident_memory_near_the_budget() -> None:
    """300,000 made-up users would take ~240 MB unbounded; with 16 MiB the process grows ~that much."""
    budget = 16 << 20
    out = subprocess.run(
        [sys.executable, "-c", FLOOD, str(budget)], cwd=REPO, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["accounted"] <= budget
    assert result["grown"] <= budget * 1.5, result  # allocator slack, never the flood's 240 MB


@pytest.fixture()
def small_budget_client(artifacts_dir: Path):
    settings = settings_for(artifacts_dir, exposure_max_bytes=1 << 16)
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    with TestClient(create_app(settings, scorer=scorer)) as client:
        yield client


def _sample(text: str, name: str) -> float:
    line = next(row for row in text.splitlines() if row.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


def test_recommend_flood_keeps_the_exposure_metric_under_the_budget(small_budget_client: TestClient) -> None:
    for u in range(400):
        assert small_budget_client.post("/recommend", json={"user_id": f"x{u}", "k": 5}).status_code == 200
    text = small_budget_client.get("/metrics").text
    held = _sample(text, 'ranker_user_state_bytes{store="exposures"}')
    users = _sample(text, 'ranker_user_state_users{store="exposures"}')
    evicted = _sample(text, 'ranker_user_state_evictions_total{reason="budget",store="exposures"}')
    assert 0 < held <= 1 << 16 and users + evicted == 400 and evicted > 0
    assert _sample(text, 'ranker_user_state_users{store="history"}') == 3  # u1, u2, u3 of the artefacts
    # 3 users' histories: offsets int64 [4], 9 events of int32 items, float64 times and bool clicks
    assert _sample(text, 'ranker_user_state_bytes{store="history"}') == 4 * 8 + 9 * (4 + 8 + 1)

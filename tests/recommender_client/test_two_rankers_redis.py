"""Two real ranker processes sharing one redis-server apply one frequency cap and one seen set (issue 18 item 5).

Each ranker is ``python -m recommender_client.service`` with no model server at its gRPC target,
so it answers in recall order (degraded) and every answer is deterministic; the cap rule is the
only thing that changes what comes back. The same two calls against two in-process stores are
the control: there each process caps alone, which is the bug the shared store fixes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from tests.recommender_client.client.servers import free_port
from tests.recommender_client.conftest import T
from tests.recommender_client.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the session fixture, used below

REPO = Path(__file__).resolve().parents[2]
CAP_ONCE = "rules:\n  - {name: cap-1, type: frequency_cap, max_impressions: 1, period_hours: 1}\n"
DB = 3  # a database of its own on the session's server: the rankers use the default key prefix


@contextlib.contextmanager
def rankers(artifacts_dir: Path, rules: Path, env: dict[str, str], count: int = 2) -> Iterator[list[str]]:
    """``count`` ranker processes started together, polled until /readyz answers, then stopped."""
    environ = {**os.environ, "RANKER_FIXED_NOW": str(T), **env}
    ports = [free_port() for _ in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "recommender_client.service", "--port", str(port)]
            + ["--artifacts-dir", str(artifacts_dir), "--rules", str(rules)]
            + ["--grpc-target", f"127.0.0.1:{free_port()}", "--log-level", "warning"],
            cwd=REPO,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, proc in zip(bases, procs, strict=True):
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"ranker exited with {proc.returncode}: {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ranker at {base} not ready within 120 s")
                time.sleep(0.05)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


def served(base: str, user: str = "u2", k: int = 2) -> list[str]:
    body = httpx.post(f"{base}/recommend", json={"user_id": user, "k": k}, timeout=10).json()
    assert body["degraded"] is True  # no model server: recall order, the same in every process
    return [item["item_id"] for item in body["items"]]


def test_two_rankers_sharing_redis_apply_one_frequency_cap(
    artifacts_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CAP_ONCE)

    # Control: each process holds its own state, so B serves what A has just served.
    with rankers(artifacts_dir, rules, {"RANKER_STATE_BACKEND": "memory"}) as (a, b):
        first = served(a)
        again_elsewhere = served(b)
        second = served(a)  # A alone caps: its next answer is the next two candidates
        third = served(a)
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    assert again_elsewhere == first
    assert third and not set(third) & set(first + second)  # u2 has 5 candidates: one is left

    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    shared = {"RANKER_STATE_BACKEND": "redis", "RANKER_REDIS_URL": url, "RANKER_REDIS_TIMEOUT_S": "1"}
    with rankers(artifacts_dir, rules, shared) as (a, b):
        assert served(a) == first
        assert served(b) == second  # A's impressions count in B: one cap for both
        assert served(a) == third  # and B's in A
    keys = sorted(store.keys())
    assert keys == [b"recsys:{u:u2}:imp"]
    assert store.zcard(keys[0]) == len(first + second + third) and 0 < store.pttl(keys[0])
    store.flushdb()
    store.close()


SEEN = "rules:\n  - {name: seen, type: filter_seen, ttl_hours: 24}\n"


def click(base: str, user: str, item: str) -> None:
    event = {"event_id": f"c-{user}-{item}", "request_id": "r1", "user_id": user, "item_id": item}
    event |= {"type": "click", "position": 0, "timestamp": T}
    assert httpx.post(f"{base}/events", json={"events": [event]}, timeout=10).json()["accepted"] == 1


def test_a_click_posted_to_one_ranker_is_seen_by_the_other(
    artifacts_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(SEEN)
    with rankers(artifacts_dir, rules, {"RANKER_STATE_BACKEND": "memory"}) as (a, b):
        before = served(b, "u9", k=3)  # u9 has no history: nothing is seen yet
        click(a, "u9", before[0])
        assert served(b, "u9", k=3) == before  # B never hears of the click
        assert before[0] not in served(a, "u9", k=3)  # A does

    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    shared = {"RANKER_STATE_BACKEND": "redis", "RANKER_REDIS_URL": url, "RANKER_REDIS_TIMEOUT_S": "1"}
    with rankers(artifacts_dir, rules, shared) as (a, b):
        assert served(b, "u9", k=3) == before
        click(a, "u9", before[0])
        assert before[0] not in served(b, "u9", k=3)
    assert store.zrange("recsys:{u:u9}:clk", 0, -1, withscores=True) == [(before[0].encode(), T)]
    store.flushdb()
    store.close()


def post(base: str, events: list[dict]) -> dict:
    return httpx.post(f"{base}/events", json={"events": events}, timeout=10).json()


def test_an_event_retried_on_the_other_ranker_is_applied_once(
    artifacts_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    """A client's retry that a load balancer sends to another replica is a duplicate there too."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(CAP_ONCE)
    event = {"event_id": "imp-7", "request_id": "r7", "user_id": "u2", "item_id": "i1"}
    event |= {"type": "impression", "position": 0, "timestamp": T}
    by_events = {"RANKER_IMPRESSIONS_FROM": "events", "RANKER_EVENTS_MAX_AGE_S": "3600"}
    with rankers(artifacts_dir, rules, {"RANKER_STATE_BACKEND": "memory", **by_events}) as (a, b):
        assert post(a, [event]) == {"accepted": 1, "duplicates": 0}
        assert post(a, [event]) == {"accepted": 0, "duplicates": 1}  # in process: remembered
        assert post(b, [event]) == {"accepted": 1, "duplicates": 0}  # the other process: applied again

    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    shared = {"RANKER_STATE_BACKEND": "redis", "RANKER_REDIS_URL": url, "RANKER_REDIS_TIMEOUT_S": "1"}
    with rankers(artifacts_dir, rules, {**shared, **by_events}) as (a, b):
        other = {**event, "event_id": "imp-8", "item_id": "i3"}
        assert post(a, [event]) == {"accepted": 1, "duplicates": 0}
        assert post(b, [event, other]) == {"accepted": 1, "duplicates": 1}
        assert post(a, [other]) == {"accepted": 0, "duplicates": 1}
    members = store.zrange("recsys:{u:u2}:imp", 0, -1)
    assert sorted(m.split(b"\x1f")[0] for m in members) == [b"i1", b"i3"]  # each impression once
    ttl = store.pttl("recsys:evt:imp-7")
    assert 3_590_000 < ttl <= (3600 + 300) * 1000  # events_max_age_s + events_max_ahead_s
    store.flushdb()
    store.close()

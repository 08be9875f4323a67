"""The OnlineState protocol, run over both backends: in process and a real redis-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from redis.utils import HIREDIS_AVAILABLE

from recommender_client.breaker import CircuitBreaker
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.service.settings import Settings
from recommender_client.state.factory import build_online_state
from recommender_client.state.memory import InProcessState
from recommender_client.state.protocol import EMPTY_STATE, OnlineState
from recommender_client.state.redis import RedisState
from tests.recommender_client.client.servers import free_port
from tests.recommender_client.redis_server import RedisServer, redis_server, running_redis

__all__ = ["redis_server"]  # the session fixture, used by the tests below

MakeState = Callable[..., OnlineState]


@pytest.fixture(params=["memory", "redis"])
def make_state(request: pytest.FixtureRequest) -> MakeState:
    """A factory of fresh stores of one backend; Redis ones get a key prefix of their own."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"

    def make(*, ttl_s: float = 3600.0, max_events: int = 500, max_clicks: int = 100) -> OnlineState:
        if request.param == "memory":
            log = InMemoryExposureLog(
                ttl_s=ttl_s, max_events_per_user=max_events, max_clicks_per_user=max_clicks
            )
            return InProcessState(log)
        server: RedisServer = request.getfixturevalue("redis_server")
        return RedisState.from_url(
            server.url,
            ttl_s=ttl_s,
            timeout_s=2.0,
            max_events_per_user=max_events,
            max_clicks_per_user=max_clicks,
            key_prefix=prefix,
        )

    return make


def run(make: MakeState, body: Callable[[OnlineState], Awaitable[Any]], **kwargs: Any) -> Any:
    """Build a store inside a fresh event loop (Redis connections belong to one), run, close."""

    async def main() -> Any:
        state = make(**kwargs)
        try:
            return await body(state)
        finally:
            await state.aclose()

    return asyncio.run(main())


def test_reads_give_back_what_was_recorded(make_state: MakeState) -> None:
    async def body(s: OnlineState) -> None:
        await s.record_impressions("u1", ["i1", "i2", "i1"], 100.0)
        await s.record_impressions("u1", ["i2"], 200.0)
        await s.record_impressions("u1", ["i3"], 300.0)
        await s.record_impressions("u2", ["i1"], 200.0)  # another user: never counted for u1
        await s.record_clicks("u1", ["i2"], 100.0)
        await s.record_clicks("u1", ["i1"], 150.0)
        await s.record_clicks("u1", ["i1"], 120.0)  # older than the kept click: 150 stays
        wanted = ["i1", "i2", "i3", "i4"]
        assert (await s.exposures("u1", wanted, since=100.0, until=250.0)).tolist() == [2, 2, 0, 0]
        assert (await s.exposures("u1", wanted, since=150.0, until=300.0)).tolist() == [0, 1, 1, 0]
        assert (await s.exposures("u1", wanted, since=301.0, until=400.0)).tolist() == [0, 0, 0, 0]
        assert (await s.exposures("nobody", wanted, since=0.0, until=1e12)).tolist() == [0, 0, 0, 0]
        assert await s.recent_clicks("u1", 10) == ["i1", "i2"]
        assert await s.recent_clicks("u1", 1) == ["i1"]
        assert await s.seen("u1") == {"i1", "i2"}
        assert await s.seen("u1", since=120.0) == {"i1"}  # i1's newest click is 150, i2's 100
        assert await s.seen("u2") == set()

        snap = await s.snapshot("u1", impressions_since=200.0)
        assert sorted(snap.impression_times.tolist()) == [200.0, 300.0]
        assert snap.exposures(wanted, since=0.0, until=1e12).tolist() == [0, 1, 1, 0]
        assert snap.clicked == ("i1", "i2") and snap.click_times.tolist() == [150.0, 100.0]
        assert snap.clicked_since(101.0) == {"i1"}
        empty = await s.snapshot("nobody", impressions_since=0.0)
        assert len(empty.impression_items) == 0 and empty.clicked == ()

    run(make_state, body)


def test_each_occurrence_counts_once(make_state: MakeState) -> None:
    """The same item at the same time, in one call and in two, is three impressions, not one."""

    async def body(s: OnlineState) -> None:
        await s.record_impressions("u", ["i1", "i1"], 10.0)
        await s.record_impressions("u", ["i1"], 10.0)
        assert (await s.exposures("u", ["i1"], since=10.0, until=10.0)).tolist() == [3]
        snap = await s.snapshot("u", impressions_since=float("-inf"))
        assert snap.impression_times.tolist() == [10.0, 10.0, 10.0]

    run(make_state, body)


def test_trimmed_to_the_per_user_maxima(make_state: MakeState) -> None:
    async def body(s: OnlineState) -> None:
        items = ["a", "b", "c", "d", "e"]
        await s.record_impressions("u", ["a", "b"], 1.0)
        await s.record_impressions("u", ["c"], 2.0)
        await s.record_impressions("u", ["d", "e"], 3.0)
        assert (await s.exposures("u", items, since=0.0, until=9.0)).tolist() == [0, 0, 1, 1, 1]
        await s.record_impressions("v", items, 5.0)  # one call over the maximum: its newest 3 stay
        assert (await s.exposures("v", items, since=0.0, until=9.0)).tolist() == [0, 0, 1, 1, 1]
        for at, item in enumerate(["x", "y", "z"]):
            await s.record_clicks("u", [item], float(at))
        assert await s.recent_clicks("u", 10) == ["z", "y"]
        await s.record_clicks("v", ["p", "q", "r"], 1.0)
        assert await s.seen("v") == {"q", "r"}

    run(make_state, body, max_events=3, max_clicks=2)


def test_one_call_of_more_items_than_a_lua_slice_records_them_all(make_state: MakeState) -> None:
    """Redis adds a write's members in slices of 499 (Lua's unpack limit): 1,200 impressions and
    1,100 clicks in one call are all kept, each time exact, the newest clicks first."""
    items = [f"i{k}" for k in range(1200)]

    async def body(s: OnlineState) -> None:
        await s.record_impressions("u", items, 1_733_000_000.123456789)
        snap = await s.snapshot("u", impressions_since=float("-inf"))
        assert len(snap.impression_items) == 1200
        assert set(snap.impression_times.tolist()) == {1_733_000_000.123456789}
        assert snap.exposures(items[::100] + ["other"], since=0, until=2e9).tolist() == [1] * 12 + [0]
        for k in range(11):  # 100 clicks a call, each call newer
            await s.record_clicks("u", items[100 * k : 100 * k + 100], float(k))
        clicks = await s.recent_clicks("u", 2000)
        assert (
            len(clicks) == 1100 and clicks[:1] in (["i1099"], ["i1000"]) and set(clicks) == set(items[:1100])
        )
        assert set(clicks[:100]) == set(items[1000:1100])  # the newest call's, first
        assert (await s.seen("u", since=10.0)) == set(items[1000:1100])

    run(make_state, body, max_events=1200, max_clicks=1100)


def test_an_idle_user_expires_after_the_ttl(make_state: MakeState) -> None:
    """Present while younger than the TTL (checked only if the read came in time), then gone."""
    ttl = 0.5

    async def body(s: OnlineState) -> None:
        start = time.monotonic()
        await s.record_impressions("u", ["i1"], 10.0)
        await s.record_clicks("u", ["i2"], 10.0)
        early = await s.snapshot("u", impressions_since=0.0)
        if time.monotonic() - start < ttl:
            assert early.exposures(["i1"], since=0.0, until=99.0).tolist() == [1]
            assert early.clicked == ("i2",)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            snap = await s.snapshot("u", impressions_since=0.0)
            if not snap.clicked and not len(snap.impression_items):
                break
            await asyncio.sleep(0.05)
        assert await s.seen("u") == set()
        assert (await s.exposures("u", ["i1"], since=0.0, until=99.0)).tolist() == [0]

    run(make_state, body, ttl_s=ttl)


def test_redis_keys_carry_the_ttl_are_trimmed_and_each_write_refreshes_both(
    redis_server: RedisServer,
) -> None:
    """What Redis holds, read directly: the TTLs, and no more members than the per-user maxima."""

    async def main() -> tuple[int, ...]:
        state = RedisState.from_url(
            redis_server.url,
            ttl_s=600.0,
            max_events_per_user=3,
            max_clicks_per_user=2,
            key_prefix=f"t{uuid.uuid4().hex}:",
        )
        imp, clk = state.keys("u")
        assert (imp, clk) == (f"{state.key_prefix}{{u:u}}:imp", f"{state.key_prefix}{{u:u}}:clk")
        await state.record_clicks("u", ["i1", "i2", "i3"], 1.0)
        await state.record_clicks("u", ["i4"], 2.0)
        await state.client.pexpire(clk, 5_000)  # as if recorded long ago
        for at in range(4):
            await state.record_impressions("u", ["i1"], float(at))
        imp_ttl, clk_ttl = await state.client.pttl(imp), await state.client.pttl(clk)
        members = await state.client.zrange(imp, 0, -1, withscores=True)
        n_clicks = await state.client.zcard(clk)
        await state.aclose()
        assert [score for _, score in members] == [1.0, 2.0, 3.0]
        assert {member.split(b"\x1f")[0] for member, _ in members} == {b"i1"}
        return imp_ttl, clk_ttl, len(members), n_clicks

    imp_ttl, clk_ttl, n_impressions, n_clicks = asyncio.run(main())
    assert 590_000 < imp_ttl <= 600_000 and 590_000 < clk_ttl <= 600_000
    assert (n_impressions, n_clicks) == (3, 2)


def test_two_redis_clients_share_one_count(redis_server: RedisServer) -> None:
    """Two stores on one Redis (two processes' worth) see each other's impressions and clicks."""
    prefix = f"t{uuid.uuid4().hex}:"

    async def main() -> tuple[list[int], list[int], list[str]]:
        a = RedisState.from_url(redis_server.url, ttl_s=600.0, key_prefix=prefix)
        b = RedisState.from_url(redis_server.url, ttl_s=600.0, key_prefix=prefix)
        await a.record_impressions("u", ["i1"], 10.0)
        await b.record_impressions("u", ["i1"], 10.0)  # same item, same time: still two
        await b.record_clicks("u", ["i2"], 11.0)
        out = (
            (await a.exposures("u", ["i1"], since=0, until=99)).tolist(),
            (await b.exposures("u", ["i1"], since=0, until=99)).tolist(),
            await a.recent_clicks("u", 5),
        )
        await a.aclose()
        await b.aclose()
        return out

    assert asyncio.run(main()) == ([2], [2], ["i2"])


def test_redis_down_serves_the_empty_state_and_counts(tmp_path: Path) -> None:
    async def against(url: str, *, stop: Callable[[], None] | None = None) -> tuple[Any, ...]:
        state = RedisState.from_url(url, ttl_s=600.0, timeout_s=0.2)
        if stop is not None:
            await state.record_impressions("u", ["i1"], 1.0)
            before = await state.snapshot("u", impressions_since=0.0)
            assert before.exposures(["i1"], since=0, until=9).tolist() == [1]
            stop()
        snap = await state.snapshot("u", impressions_since=0.0)
        await state.record_impressions("u", ["i1"], 2.0)  # dropped, not raised
        await state.record_clicks("u", ["i1"], 2.0)
        counts = (await state.exposures("u", ["i1"], since=0, until=9)).tolist()
        alive = await state.ping()
        errors = dict(state.errors)
        await state.aclose()
        return snap, counts, alive, errors

    nobody = f"redis://127.0.0.1:{free_port()}/0"
    snap, counts, alive, errors = asyncio.run(against(nobody))
    assert snap is EMPTY_STATE and counts == [0] and alive is False
    assert errors == {"record": 2, "read": 1, "skipped": 1}  # 3 failures open the breaker

    with running_redis(tmp_path) as server:

        def stop() -> None:
            server.proc.terminate()
            server.proc.wait(timeout=20)

        snap, counts, alive, errors = asyncio.run(against(server.url, stop=stop))
    assert snap is EMPTY_STATE and counts == [0] and alive is False
    assert errors == {"record": 2, "read": 1, "skipped": 1}  # 3 failures open the breaker


def test_after_failures_no_call_is_made_until_the_cool_down_then_one_trial(tmp_path: Path) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5.0, clock=lambda: now[0])
    port = free_port()

    async def main() -> tuple[dict[str, int], list[int]]:
        state = RedisState.from_url(
            f"redis://127.0.0.1:{port}/0", ttl_s=600.0, timeout_s=1.0, breaker=breaker
        )
        assert await state.snapshot("u", impressions_since=0.0) is EMPTY_STATE  # nobody listens: fails
        await state.record_impressions("u", ["i1"], 1.0)  # fails: the breaker opens
        with running_redis(tmp_path, port=port):
            await state.record_impressions("u", ["i1"], 2.0)  # Redis is back, but not tried yet
            assert await state.snapshot("u", impressions_since=0.0) is EMPTY_STATE
            now[0] = 5.0
            await state.record_impressions("u", ["i2"], 3.0)  # the trial: it succeeds and closes
            counts = (await state.exposures("u", ["i1", "i2"], since=0, until=9)).tolist()
            errors = dict(state.errors)
            await state.aclose()
        return errors, counts

    errors, counts = asyncio.run(main())
    assert errors == {"record": 1, "read": 1, "skipped": 2}
    assert counts == [0, 1]  # only the trial's write reached Redis


def test_a_refused_command_is_counted_but_does_not_open_the_breaker(redis_server: RedisServer) -> None:
    """Redis answering with an error is not an outage: the next calls still go to Redis."""

    async def main() -> tuple[dict[str, int], list[int]]:
        state = RedisState.from_url(redis_server.url, ttl_s=600.0, key_prefix=f"t{uuid.uuid4().hex}:")
        imp, _ = state.keys("u")
        await state.client.set(imp, b"not a sorted set")  # every ZADD on it answers WRONGTYPE
        for _ in range(4):
            await state.record_impressions("u", ["i1"], 1.0)
        await state.client.delete(imp)
        await state.record_impressions("u", ["i1"], 2.0)
        counts = (await state.exposures("u", ["i1"], since=0, until=9)).tolist()
        errors = dict(state.errors)
        await state.aclose()
        return errors, counts

    assert asyncio.run(main()) == ({"record": 4, "read": 0, "skipped": 0}, [1])


def test_scripts_are_loaded_again_after_redis_forgets_them(redis_server: RedisServer) -> None:
    """A restarted or failed-over Redis answers NOSCRIPT: the read and the write load their
    script again and succeed (no error counted)."""

    async def main() -> tuple[list[int], dict[str, int]]:
        state = RedisState.from_url(redis_server.url, ttl_s=600.0, key_prefix=f"t{uuid.uuid4().hex}:")
        await state.record_impressions("u", ["i1"], 1.0)
        await state.client.script_flush()
        await state.record_impressions("u", ["i1"], 2.0)
        await state.client.script_flush()
        counts = (await state.exposures("u", ["i1"], since=0, until=9)).tolist()
        errors = dict(state.errors)
        await state.aclose()
        return counts, errors

    assert asyncio.run(main()) == ([2], {"record": 0, "read": 0, "skipped": 0})


def test_redis_state_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_events_per_user and max_clicks_per_user must be >= 1"):
        RedisState.from_url("redis://127.0.0.1:1/0", ttl_s=1.0, max_events_per_user=0)
    with pytest.raises(ValueError, match="ttl_s >= 0.001"):
        RedisState.from_url("redis://127.0.0.1:1/0", ttl_s=0.0)


def test_the_factory_follows_the_settings(tmp_path: Path) -> None:
    memory = build_online_state(
        Settings(artifacts_dir=tmp_path, exposure_ttl_s=7.0, exposure_max_events_per_user=9)
    )
    assert isinstance(memory, InProcessState)
    assert (memory.log.ttl_s, memory.log.max_events_per_user) == (7.0, 9)
    given = InMemoryExposureLog()
    assert build_online_state(Settings(artifacts_dir=tmp_path), log=given).log is given  # type: ignore[attr-defined]

    settings = Settings(
        artifacts_dir=tmp_path,
        state_backend="redis",
        redis_url="redis://cache.internal:6380/2",
        redis_timeout_s=0.3,
        redis_max_connections=5,
        exposure_ttl_s=60.0,
        exposure_max_events_per_user=11,
    )
    remote = build_online_state(settings)
    assert isinstance(remote, RedisState)
    assert HIREDIS_AVAILABLE  # the C reply parser: a 500-impression snapshot ~0.5 ms instead of ~3
    assert (remote.ttl_s, remote.max_events_per_user, remote.max_clicks_per_user) == (60.0, 11, 100)
    pool = remote.client.connection_pool
    assert pool.max_connections == 5 and pool.timeout == 0.3  # type: ignore[attr-defined]
    kwargs = pool.connection_kwargs
    assert pool.make_connection().retry.get_retries() == 0  # one attempt: the breaker decides the next
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 2)
    assert kwargs["socket_timeout"] == 0.3 and kwargs["socket_connect_timeout"] == 0.3
    asyncio.run(remote.aclose())


def test_bad_backend_settings_fail_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="state_backend"):
        Settings(artifacts_dir=tmp_path, state_backend="memcached")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(artifacts_dir=tmp_path, redis_url="http://127.0.0.1:6379")
    with pytest.raises(ValidationError, match="redis_timeout_s"):
        Settings(artifacts_dir=tmp_path, redis_timeout_s=0)


def test_any_json_string_is_an_id(make_state: MakeState) -> None:
    """Non-ASCII ids and lone surrogates (JSON's "\\ud800") are kept apart and come back whole."""
    odd_user, odd_item = "u\ud800", "é\udfff}\x1f{"

    async def body(s: OnlineState) -> None:
        await s.record_impressions(odd_user, [odd_item, "i1"], 5.0)
        await s.record_clicks(odd_user, [odd_item], 5.0)
        assert (await s.exposures(odd_user, [odd_item, "i1", "é"], since=0, until=9)).tolist() == [1, 1, 0]
        assert await s.recent_clicks(odd_user, 3) == [odd_item]
        assert await s.seen("u") == set()

    run(make_state, body)


def test_snapshot_times_are_float64(make_state: MakeState) -> None:
    async def body(s: OnlineState) -> None:
        await s.record_impressions("u", ["i1"], 1_700_000_000.25)
        snap = await s.snapshot("u", impressions_since=0.0)
        assert snap.impression_times.dtype == np.float64 and snap.impression_items.dtype == np.int64
        assert snap.impression_times.tolist() == [1_700_000_000.25]

    run(make_state, body)

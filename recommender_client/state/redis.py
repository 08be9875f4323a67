"""The online state in Redis: two TTL'd sorted sets per user, shared by every ranker process."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from recommender_client.breaker import CircuitBreaker
from recommender_client.state.protocol import EMPTY_STATE, UserState
from recommender_client.state.redis_scripts import READ, WRITE, parse_read, write_args

log = logging.getLogger(__name__)

# Member = item id, SEP, a token unique to this (process, call, position): each impression
# is its own member, so one item shown twice counts twice. Tokens never hold SEP.
SEP = b"\x1f"
# Ids are any str JSON can carry, lone surrogates included (from a JSON \ud800 escape): stored as
# UTF-8 with surrogates passed through, so every id round-trips instead of failing to encode.
ENCODING, ERRORS = "utf-8", "surrogatepass"
# What a failing store raises: redis-py's own errors (ConnectionError and TimeoutError are
# RedisErrors), a socket error it did not wrap, and asyncio's timeout.
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


class RedisState:
    """``OnlineState`` in Redis, so every ranker process applies the same caps and seen sets.

    Per user ``<prefix>{u:<user>}:imp`` holds impressions (member ``item SEP token``, score the
    time ``at``) and ``<prefix>{u:<user>}:clk`` clicks (member the item, score its newest click
    time: ``ZADD GT``). The ``{u:<user>}`` hash tag keeps a user's two keys in one cluster slot.
    Each write is one atomic script call (``redis_scripts.WRITE``): add, trim to the newest
    ``max_events_per_user`` impressions (``max_clicks_per_user`` clicks) and ``PEXPIRE`` both
    keys by ``ttl_s``, so a user not recorded for ``ttl_s`` seconds (Redis's clock) is
    forgotten, as in process. A request's read is one script call too (``READ``).

    Memory: ~33 bytes an impression when Redis keeps the set as a listpack
    (``zset-max-listpack-entries`` >= ``max_events_per_user``, as docker/redis.Dockerfile sets),
    16 KB a user at 500; ~120 bytes as a skiplist (Redis's default past 128 members).

    Bounds: a call records at most the newest per-user maximum of its items (the trim would drop
    the others anyway); reads fetch at most the per-user maxima; one pool of ``max_connections``
    connections, waiting at most ``timeout_s`` for one; every socket read and connect times out
    after ``timeout_s``.

    Failures never reach the client: a request must be answered while Redis is down, and an
    unrecorded impression only loosens a cap. A failed ``snapshot`` (or other read) returns the
    empty state, a failed record is dropped; both are counted in ``errors`` (by operation, for
    the metrics) and logged once when failures start and once when Redis answers again. After
    ``breaker``'s threshold of failures in a row (3) no call is made for its cool-down (1 s;
    counted as ``skipped``), then one trial call: an unreachable Redis whose packets vanish
    would otherwise cost every request a timeout for the read and another for the write.
    An error answer (``ResponseError``: a refused value, a key of another type) is counted but
    does not move the breaker: Redis is up. No retries (redis-py's are off on a pool of our
    own): the next request tries again.
    """

    shared = True

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl_s: float,
        max_events_per_user: int = 500,
        max_clicks_per_user: int = 100,
        key_prefix: str = "recsys:",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if min(max_events_per_user, max_clicks_per_user) < 1 or not ttl_s >= 0.001:
            raise ValueError(
                "RedisState: max_events_per_user and max_clicks_per_user must be >= 1 and ttl_s >= 0.001 "
                f"(PEXPIRE takes milliseconds), got {max_events_per_user}, {max_clicks_per_user}, {ttl_s}"
            )
        self.client = client
        self.ttl_s = ttl_s
        self._ttl_ms = int(ttl_s * 1000)
        self.max_events_per_user = max_events_per_user
        self.max_clicks_per_user = max_clicks_per_user
        self.key_prefix = key_prefix
        self.breaker = breaker if breaker is not None else CircuitBreaker(failure_threshold=3, cooldown_s=1.0)
        self.errors = {"record": 0, "read": 0, "skipped": 0}
        self._failing = False
        self._nonce = os.urandom(4).hex().encode()  # tells this process's tokens from another's
        self._counter = itertools.count()
        self._read_script = client.register_script(READ)
        self._write_script = client.register_script(WRITE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ttl_s: float,
        timeout_s: float = 0.05,
        max_connections: int = 16,
        **kwargs: Any,
    ) -> RedisState:
        """A store on its own bounded pool; connects on first use (nothing happens here)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            encoding=ENCODING,
            encoding_errors=ERRORS,
        )
        return cls(aioredis.Redis.from_pool(pool), ttl_s=ttl_s, **kwargs)

    def keys(self, user_id: str) -> tuple[str, str]:
        """The user's impressions and clicks keys."""
        tag = f"{self.key_prefix}{{u:{user_id}}}"
        return f"{tag}:imp", f"{tag}:clk"

    async def record_impressions(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        if not item_ids:
            return
        items = item_ids[-self.max_events_per_user :]
        base = next(self._counter)
        token = self._nonce + b"%x." % base
        members = {
            item.encode(ENCODING, ERRORS) + SEP + token + b"%x" % i: at for i, item in enumerate(items)
        }
        imp, clk = self.keys(user_id)
        await self._write(imp, clk, members, self.max_events_per_user, gt=False)

    async def record_clicks(self, user_id: str, item_ids: Sequence[str], at: float) -> None:
        if not item_ids:
            return
        members = {item.encode(ENCODING, ERRORS): at for item in item_ids[-self.max_clicks_per_user :]}
        imp, clk = self.keys(user_id)
        await self._write(clk, imp, members, self.max_clicks_per_user, gt=True)

    def event_key(self, event_id: str) -> str:
        """The marker of an applied event id (``/events`` idempotency across replicas)."""
        return f"{self.key_prefix}evt:{event_id}"

    async def claim_events(self, event_ids: Sequence[str], ttl_s: float) -> list[bool] | None:
        """Mark each id applied, in one round trip (``SET NX PX``): ``True`` where this call set
        the marker first, ``False`` where any replica had; ``None`` when Redis failed (the caller
        then relies on its own memory of ids). A marker lives ``ttl_s``: past the oldest age an
        event may have, a replayed id is refused by its timestamp anyway. Failures count as
        ``record`` errors (a claim is a write)."""
        if not event_ids:
            return []
        ttl_ms = max(1, int(ttl_s * 1000))

        def commands(pipe: Pipeline) -> None:
            for event_id in event_ids:
                pipe.set(self.event_key(event_id), b"1", nx=True, px=ttl_ms)

        replies = await self._run("record", lambda: self._pipelined(commands))
        return None if replies is None else [bool(r) for r in replies]

    async def release_events(self, event_ids: Sequence[str]) -> None:
        """Drop the markers of ids that were claimed but could not be applied (best effort)."""
        if event_ids:
            keys = [self.event_key(event_id) for event_id in event_ids]

            def commands(pipe: Pipeline) -> None:
                pipe.delete(*keys)

            await self._run("record", lambda: self._pipelined(commands))

    async def _write(self, key: str, other: str, members: dict[bytes, float], keep: int, *, gt: bool) -> None:
        """Add to ``key``, trim it to the newest ``keep`` and refresh its and the user's
        ``other`` key's TTL, in one script call."""
        args = write_args(members, keep, self._ttl_ms, gt=gt)
        await self._run("record", lambda: self._write_script(keys=[key, other], args=args))

    async def _pipelined(self, commands: Callable[[Pipeline], None]) -> list[Any]:
        """The commands ``commands`` queues, sent in one round trip (not a transaction)."""
        async with self.client.pipeline(transaction=False) as pipe:
            commands(pipe)
            return await pipe.execute()

    async def _run(self, op: str, call: Callable[[], Awaitable[Any]]) -> Any | None:
        """One round trip (``call``'s); ``None`` when Redis failed, or the breaker is open after
        failures and the call is not made at all (``errors["skipped"]``)."""
        if not self.breaker.allow():
            self.errors["skipped"] += 1
            return None
        try:
            reply = await call()
        except STORE_ERRORS as exc:
            if isinstance(exc, ResponseError):  # Redis answered (a refused value, a foreign key)
                self.breaker.release()
            else:
                self.breaker.record(exc)
            self._failed(op, exc)
            return None
        except BaseException as exc:  # cancelled with the request: frees a half-open trial
            self.breaker.record(exc)
            raise
        self.breaker.record(None)
        self._answered()
        return reply

    async def exposures(
        self, user_id: str, item_ids: Sequence[str], *, since: float, until: float
    ) -> np.ndarray:
        state = await self.snapshot(user_id, impressions_since=since)
        return state.exposures(item_ids, since=since, until=until)

    async def seen(self, user_id: str, *, since: float = float("-inf")) -> set[str]:
        return (await self.snapshot(user_id, impressions_since=float("inf"))).clicked_since(since)

    async def recent_clicks(self, user_id: str, n: int) -> list[str]:
        return list((await self.snapshot(user_id, impressions_since=float("inf"))).clicked[:n])

    async def snapshot(self, user_id: str, *, impressions_since: float) -> UserState:
        """Impressions at or after ``impressions_since`` and the kept clicks, in one script call."""
        args = [_score_min(impressions_since), self.max_events_per_user, self.max_clicks_per_user - 1]
        reply = await self._run("read", lambda: self._read_script(keys=list(self.keys(user_id)), args=args))
        if reply is None:
            return EMPTY_STATE
        return parse_read(reply, SEP, ENCODING, ERRORS)

    async def ping(self) -> bool:
        """Whether Redis answers now (for readiness reports; never raises)."""
        try:
            return bool(await self.client.ping())
        except STORE_ERRORS:
            return False

    async def aclose(self) -> None:
        await self.client.aclose(close_connection_pool=True)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors[op] += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "online state: Redis %s failed (%s: %s); serving without it", op, type(exc).__name__, exc
            )

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("online state: Redis answers again (errors so far: %s)", self.errors)


def _score_min(since: float) -> str | float:
    """ZRANGEBYSCORE's inclusive lower bound (``-inf``/``+inf`` spelled as Redis wants)."""
    if since == float("-inf"):
        return "-inf"
    if since == float("inf"):
        return "+inf"
    return since

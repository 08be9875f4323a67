"""AsyncRestClient against the same real HTTP server as RestClient: answers, errors, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from recommender_client.client import (
    BadResponse,
    InvalidRequest,
    ModelNotFound,
    ServingTimeout,
    ServingUnavailable,
)
from recommender_client.client.rest_aio_client import AsyncRestClient

from .servers import VERSION, Behaviour, free_port, start_rest_server

X = np.array([1.0, 2.0, 5.0], dtype=np.float32)


@pytest.fixture(scope="module")
def server():
    behaviour = Behaviour()
    http_server, port = start_rest_server(behaviour)
    yield behaviour, port
    behaviour.release.set()
    http_server.shutdown()
    http_server.server_close()


def with_client(port: int, body: Callable[[AsyncRestClient], Awaitable[Any]], **kwargs: Any) -> Any:
    async def main() -> Any:
        client = AsyncRestClient(f"http://127.0.0.1:{port}", **{"timeout": 5.0, "backoff": 0.01, **kwargs})
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def test_predict_names_a_lone_output_from_metadata_and_reads_status(server):
    behaviour, port = server
    behaviour.calls.clear()

    async def body(client: AsyncRestClient) -> tuple[Any, Any, Any]:
        first = await client.predict({"x": X}, model_name="half_plus_two")
        named = await client.predict({"x": X[:2]}, model_name="named", output_filter=["tags"])
        return first, named, await client.model_status("half_plus_two")

    first, named, statuses = with_client(port, body)
    assert list(first) == ["y"] and first["y"].dtype == np.float32
    assert first["y"].tolist() == [2.5, 3.0, 4.5]
    assert list(named) == ["tags"] and named["tags"].tolist() == [b"t1", b"t2"]
    assert [(s.version, s.state) for s in statuses] == [(VERSION, "AVAILABLE")]


def test_503_is_retried_then_reported(server):
    behaviour, port = server
    behaviour.calls.clear()
    behaviour.fail_times = 2
    got = with_client(port, lambda c: c.predict({"x": X}, model_name="flaky", output_filter=["y"]), retries=2)
    assert got["y"].tolist() == [2.5, 3.0, 4.5] and behaviour.calls["flaky"] == 3
    behaviour.calls.clear()
    behaviour.fail_times = 10
    with pytest.raises(ServingUnavailable, match=r"HTTP 503: model flaky is warming up \(call 2\)"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="flaky"), retries=1)


def test_timeouts_and_typed_errors(server):
    behaviour, port = server
    behaviour.calls.clear()
    with pytest.raises(ServingTimeout, match="no answer within"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="slow", timeout=0.2))
    assert behaviour.calls["slow"] == 1
    with pytest.raises(InvalidRequest, match=r"HTTP 400: input 'x' is missing"):
        with_client(port, lambda c: c.predict({"z": X}, model_name="half_plus_two"))
    with pytest.raises(ModelNotFound, match=r"Specific\(half_plus_two, 9\)"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="half_plus_two", version=9))
    with pytest.raises(BadResponse, match="response is not JSON"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="garbage"))


def test_nothing_listening_is_unavailable():
    port = free_port()
    with pytest.raises(ServingUnavailable, match="Connect"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="m", timeout=2.0), retries=1)

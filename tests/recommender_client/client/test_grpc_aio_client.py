"""AsyncGrpcClient against the same real gRPC server as GrpcClient: same answers, errors, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from recommender_client.client import InvalidRequest, ModelNotFound, ServingTimeout, ServingUnavailable
from recommender_client.client.grpc_aio_client import AsyncGrpcClient

from .servers import VERSION, Behaviour, free_port, start_grpc_server

pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")

X = np.array([1.0, 2.0, 5.0], dtype=np.float32)


@pytest.fixture(scope="module")
def server():
    behaviour = Behaviour()
    grpc_server, port = start_grpc_server(behaviour)
    yield behaviour, port
    behaviour.release.set()
    grpc_server.stop(grace=0).wait()


def with_client(port: int, body: Callable[[AsyncGrpcClient], Awaitable[Any]], **kwargs: Any) -> Any:
    """Run ``body(client)`` on a fresh event loop with a client created inside it."""

    async def main() -> Any:
        client = AsyncGrpcClient(f"127.0.0.1:{port}", **{"timeout": 5.0, "backoff": 0.01, **kwargs})
        try:
            return await body(client)
        finally:
            await client.close()

    return asyncio.run(main())


def test_predict_and_status_match_the_blocking_client(server):
    behaviour, port = server
    behaviour.calls.clear()

    async def body(client: AsyncGrpcClient) -> tuple[dict, list]:
        outputs = await client.predict({"x": X}, model_name="half_plus_two", version_label="stable")
        return outputs, await client.model_status("half_plus_two")

    outputs, statuses = with_client(port, body)
    assert outputs["y"].dtype == np.float32 and outputs["y"].tolist() == [2.5, 3.0, 4.5]
    assert outputs["n"].tolist() == [0, 1, 2]
    assert (statuses[0].version, statuses[0].state) == (VERSION, "AVAILABLE")


def test_unavailable_is_retried_then_reported(server):
    behaviour, port = server
    behaviour.calls.clear()
    behaviour.fail_times = 2
    got = with_client(port, lambda c: c.predict({"x": X}, model_name="flaky"), retries=2)
    assert got["y"].tolist() == [2.5, 3.0, 4.5] and behaviour.calls["flaky"] == 3
    behaviour.calls.clear()
    with pytest.raises(ServingUnavailable, match=r"warming up \(call 2\).*gave up after 2 attempt"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="flaky"), retries=1)


def test_deadline_invalid_and_missing_model_errors(server):
    behaviour, port = server
    behaviour.calls.clear()
    with pytest.raises(ServingTimeout, match="DEADLINE_EXCEEDED"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="slow", timeout=0.2))
    assert behaviour.calls["slow"] == 1  # a deadline is never retried
    with pytest.raises(InvalidRequest, match="input 'x' is missing"):
        with_client(port, lambda c: c.predict({"z": X}, model_name="half_plus_two"))
    with pytest.raises(ModelNotFound, match=r"Servable not found for request: Latest\(nope\)"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="nope"))


def test_nothing_listening_is_unavailable():
    port = free_port()
    with pytest.raises(ServingUnavailable, match="UNAVAILABLE"):
        with_client(port, lambda c: c.predict({"x": X}, model_name="m", timeout=2.0), retries=1)

"""The gRPC channels spread calls over every address the target resolves to (round_robin);
gRPC's default pick_first sent them all to one TF Serving pod (issue 18 item 5)."""

from __future__ import annotations

import asyncio

import numpy as np

from recommender_client.client import GrpcClient
from recommender_client.client.grpc_aio_client import AsyncGrpcClient
from tests.recommender_client.scripted_tfs import scripted_server

X = np.ones(3, np.float32)


def test_sync_and_async_clients_call_both_servers() -> None:
    with scripted_server() as (first, port1), scripted_server() as (second, port2):
        target = f"ipv4:127.0.0.1:{port1},127.0.0.1:{port2}"
        with GrpcClient(target, timeout=5.0) as client:
            for _ in range(40):
                assert client.predict({"x": X}, model_name="m")["ctr"].tolist() == [0.5] * 3
        sync_calls = (first.calls["Predict"], second.calls["Predict"])

        async def main() -> None:
            client = AsyncGrpcClient(target, timeout=5.0)
            try:
                for _ in range(40):
                    await client.predict({"x": X}, model_name="m")
            finally:
                await client.close()

        asyncio.run(main())
    assert sum(sync_calls) == 40 and min(sync_calls) >= 10
    async_calls = (first.calls["Predict"] - sync_calls[0], second.calls["Predict"] - sync_calls[1])
    assert sum(async_calls) == 40 and min(async_calls) >= 10


def test_a_dns_name_with_one_address_still_works() -> None:
    with scripted_server() as (script, port), GrpcClient(f"dns:///localhost:{port}", timeout=5.0) as client:
        assert client.predict({"x": X}, model_name="m")["ctr"].tolist() == [0.5] * 3
    assert script.calls["Predict"] == 1

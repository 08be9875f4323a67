"""Both clients against the project's embedded model server serving TF Serving's half_plus_two."""

from __future__ import annotations

import numpy as np
import pytest

from recommender_client.client import GrpcClient, InvalidRequest, ModelNotFound, RestClient

pytest.importorskip("tensorflow")
server_module = pytest.importorskip("serving.model_server.server")
config_module = pytest.importorskip("serving.model_server.config")

X = np.array([1.0, 2.0, 5.0], dtype=np.float32)


@pytest.fixture(scope="module")
def model_server(tfserving_testdata):
    options = config_module.ServerOptions(
        port=0,
        rest_api_port=0,
        bind_address="127.0.0.1",
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
    )
    with server_module.ModelServer(options, enable_rest=True) as server:
        yield server


@pytest.fixture(scope="module")
def clients(model_server):
    grpc_client = GrpcClient(f"127.0.0.1:{model_server.grpc_port}", timeout=10.0)
    rest_client = RestClient(f"http://127.0.0.1:{model_server.rest_port}", timeout=10.0)
    with grpc_client, rest_client:
        yield {"grpc": grpc_client, "rest": rest_client}


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_predict_half_plus_two(clients, protocol):
    outputs = clients[protocol].predict({"x": X}, model_name="half_plus_two")
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(outputs["y"].reshape(-1), np.array([2.5, 3.0, 4.5], np.float32))
    pinned = clients[protocol].predict({"x": X[:1]}, model_name="half_plus_two", version=123)
    assert pinned["y"].reshape(-1).tolist() == [2.5]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_status_and_metadata(clients, protocol):
    statuses = clients[protocol].model_status("half_plus_two")
    assert [(s.version, s.state, s.error_code) for s in statuses] == [(123, "AVAILABLE", "OK")]
    meta = clients[protocol].model_metadata("half_plus_two")
    assert meta.version == 123
    sig = meta.signature("serving_default")
    assert sig.method_name == "tensorflow/serving/predict"
    assert {n: s.dtype for n, s in sig.inputs.items()} == {"x": "float32"}
    assert {n: s.dtype for n, s in sig.outputs.items()} == {"y": "float32"}


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_server_errors_are_typed(clients, protocol):
    with pytest.raises(ModelNotFound, match="nope"):
        clients[protocol].predict({"x": X}, model_name="nope")
    with pytest.raises(ModelNotFound, match="half_plus_two"):
        clients[protocol].predict({"x": X}, model_name="half_plus_two", version=7)
    with pytest.raises(InvalidRequest, match="(?i)input") as info:
        clients[protocol].predict({"z": X}, model_name="half_plus_two")
    assert info.value.code == {"grpc": "INVALID_ARGUMENT", "rest": 400}[protocol]
    assert info.value.server_message in str(info.value)

"""GrpcClient against a real in-process gRPC server built on TF Serving's official servicers."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from recommender_client.client import (
    BadResponse,
    GrpcClient,
    InvalidRequest,
    ModelNotFound,
    ServingTimeout,
    ServingUnavailable,
    TFServingError,
    validate_outputs,
)

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


@pytest.fixture()
def client(server):
    _, port = server
    with GrpcClient(f"127.0.0.1:{port}", timeout=5.0, retries=2, backoff=0.01) as client:
        yield client


def test_predict_half_plus_two(client):
    outputs = client.predict({"x": X}, model_name="half_plus_two")
    assert sorted(outputs) == ["n", "y"]
    assert outputs["y"].dtype == np.float32
    assert outputs["y"].tolist() == [2.5, 3.0, 4.5]
    assert outputs["n"].dtype == np.int64 and outputs["n"].tolist() == [0, 1, 2]


def test_predict_with_version_label_and_output_filter(client):
    by_version = client.predict({"x": X}, model_name="half_plus_two", version=VERSION, output_filter=["y"])
    by_label = client.predict(
        {"x": X}, model_name="half_plus_two", version_label="stable", output_filter=("y",)
    )
    assert list(by_version) == ["y"] and list(by_label) == ["y"]
    assert by_version["y"].tolist() == by_label["y"].tolist() == [2.5, 3.0, 4.5]


def test_unavailable_twice_then_success_is_retried(client, behaviour):
    outputs = client.predict({"x": X}, model_name="flaky")
    assert outputs["y"].tolist() == [2.5, 3.0, 4.5]
    assert behaviour.calls["flaky"] == 3


def test_unavailable_beyond_retries_raises_with_server_message(server, behaviour):
    _, port = server
    with GrpcClient(f"127.0.0.1:{port}", timeout=5.0, retries=1, backoff=0.01) as client:
        with pytest.raises(
            ServingUnavailable, match=r"warming up \(call 2\).*gave up after 2 attempt"
        ) as info:
            client.predict({"x": X}, model_name="flaky")
    assert info.value.code == "UNAVAILABLE"
    assert info.value.server_message == "model flaky is warming up (call 2)"
    assert behaviour.calls["flaky"] == 2


def test_deadline_raises_timeout_without_retry(server, behaviour):
    _, port = server
    with GrpcClient(f"127.0.0.1:{port}", timeout=5.0, retries=2) as client:
        with pytest.raises(ServingTimeout, match="DEADLINE_EXCEEDED") as info:
            client.predict({"x": X}, model_name="slow", timeout=0.2)
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert behaviour.calls["slow"] == 1


def test_invalid_argument_is_not_retried(client, behaviour):
    with pytest.raises(InvalidRequest, match="input 'x' is missing"):
        client.predict({"z": X}, model_name="flaky")
    assert behaviour.calls["flaky"] == 3  # two UNAVAILABLEs retried, the INVALID_ARGUMENT not
    with pytest.raises(InvalidRequest, match="input 'x' is missing") as info:
        client.predict({"z": X}, model_name="half_plus_two")
    assert info.value.code == "INVALID_ARGUMENT"
    assert behaviour.calls["half_plus_two"] == 1


def test_missing_model_and_version_are_model_not_found(client):
    with pytest.raises(ModelNotFound, match=r"Servable not found for request: Latest\(nope\)"):
        client.predict({"x": X}, model_name="nope")
    with pytest.raises(ModelNotFound, match=r"Specific\(half_plus_two, 7\)"):
        client.predict({"x": X}, model_name="half_plus_two", version=7)
    assert issubclass(ModelNotFound, InvalidRequest)


def test_other_server_errors_are_base_errors(client):
    with pytest.raises(TFServingError, match="INTERNAL: kernel exploded") as info:
        client.predict({"x": X}, model_name="broken")
    assert type(info.value) is TFServingError


def test_requested_output_the_server_lacks_is_reported(client):
    with pytest.raises(InvalidRequest, match="output tensor alias not found: ctr"):
        client.predict({"x": X}, model_name="half_plus_two", output_filter=["ctr"])


def test_square_output_is_a_bad_response(client):
    outputs = client.predict({"x": X}, model_name="square", output_filter=["y"])
    assert outputs["y"].shape == (3, 3)
    with pytest.raises(BadResponse, match=r"output 'y' has shape \[3, 3\], expected \[3\]"):
        validate_outputs(outputs, num_rows=3, names=["y"])


def test_client_side_argument_errors(client):
    with pytest.raises(InvalidRequest, match="not both"):
        client.predict({"x": X}, model_name="half_plus_two", version=1, version_label="a")
    with pytest.raises(InvalidRequest, match="at least one input"):
        client.predict({}, model_name="half_plus_two")
    with pytest.raises(ValueError, match="finite number of seconds"):
        client.predict({"x": X}, model_name="half_plus_two", timeout=float("inf"))
    with pytest.raises(ValueError, match="finite number of seconds"):
        GrpcClient("127.0.0.1:1", timeout=0)


def test_model_status(client):
    statuses = client.model_status("half_plus_two")
    assert [(s.version, s.state, s.error_code, s.error_message) for s in statuses] == [
        (VERSION, "AVAILABLE", "OK", ""),
        (100, "END", "FAILED_PRECONDITION", "unloaded"),
    ]
    with pytest.raises(ModelNotFound, match="Could not find any versions of model nope"):
        client.model_status("nope")


def test_model_metadata(client):
    meta = client.model_metadata("half_plus_two")
    assert (meta.model_name, meta.version) == ("half_plus_two", VERSION)
    sig = meta.signature("serving_default")
    assert {n: (s.dtype, s.shape) for n, s in sig.inputs.items()} == {"x": ("float32", (None,))}
    assert {n: s.dtype for n, s in sig.outputs.items()} == {"n": "int64", "y": "float32"}
    with pytest.raises(KeyError, match="no signature 'other'"):
        meta.signature("other")


def test_no_server_is_unavailable_after_retries():
    with GrpcClient(f"127.0.0.1:{free_port()}", timeout=5.0, retries=1, backoff=0.01) as client:
        with pytest.raises(ServingUnavailable, match="gave up after 2 attempt"):
            client.model_status("half_plus_two")


def test_injected_channel_is_used_and_left_open(server):
    _, port = server
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        with GrpcClient(channel=channel, timeout=5.0) as client:
            assert client.predict({"x": X[:1]}, model_name="half_plus_two")["y"].tolist() == [2.5]
        # Still usable after the client closed: the caller owns it.
        again = GrpcClient(channel=channel, timeout=5.0)
        assert again.model_status("half_plus_two")[0].available
    finally:
        channel.close()


def test_closed_client_refuses_calls(server):
    _, port = server
    client = GrpcClient(f"127.0.0.1:{port}")
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.model_status("half_plus_two")


def test_client_recovers_when_the_server_comes_back(behaviour):
    port = free_port()
    with GrpcClient(f"127.0.0.1:{port}", timeout=2.0, retries=0) as client:
        for _ in range(3):  # a few failed connects grow the channel's reconnect backoff
            with pytest.raises(ServingUnavailable):
                client.model_status("half_plus_two")
        server, _ = start_grpc_server(behaviour, port=port)
        try:
            give_up = time.monotonic() + 20.0
            while True:
                try:
                    statuses = client.model_status("half_plus_two")
                    break
                except ServingUnavailable:
                    if time.monotonic() > give_up:
                        raise
                    time.sleep(0.05)
            assert statuses[0].version == VERSION and statuses[0].available
        finally:
            server.stop(grace=0).wait()


def test_max_message_bytes_applies_to_the_channel(server):
    _, port = server
    with GrpcClient(f"127.0.0.1:{port}", timeout=5.0, max_message_bytes=1024) as client:
        assert client.predict({"x": X}, model_name="half_plus_two")["y"].tolist() == [2.5, 3.0, 4.5]
        with pytest.raises(TFServingError, match="RESOURCE_EXHAUSTED") as info:
            client.predict({"x": np.zeros(1000, np.float32)}, model_name="half_plus_two")
    assert info.value.code == "RESOURCE_EXHAUSTED"

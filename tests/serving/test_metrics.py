"""Prometheus exposition with TF Serving's metric names, checked line by line."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.model_server.config import ServerOptions
from serving.model_server.metrics import LATENCY_BUCKETS_US, Metrics
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray


def test_counts_and_latency_histogram() -> None:
    metrics = Metrics(latency_buckets_us=(10.0, 100.0))
    metrics.record_request("m", "Predict", "GRPC", grpc.StatusCode.OK, 5.0)
    metrics.record_request("m", "Predict", "GRPC", grpc.StatusCode.OK, 50.0)
    metrics.record_request("m", "Predict", "GRPC", grpc.StatusCode.OK, 500.0)
    metrics.record_request("m", "Predict", "REST", grpc.StatusCode.INVALID_ARGUMENT, 7.0)
    assert metrics.request_count("m") == 3
    assert metrics.request_count("m", "INVALID_ARGUMENT") == 1
    lines = metrics.exposition().splitlines()
    assert lines[:3] == [
        "# TYPE :tensorflow:serving:request_count counter",
        ':tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 1',
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 3',
    ]
    base = 'model_name="m",API="Predict",entrypoint="GRPC"'
    assert lines[3:9] == [
        "# TYPE :tensorflow:serving:request_latency histogram",
        f':tensorflow:serving:request_latency_bucket{{{base},le="10"}} 1',  # cumulative buckets
        f':tensorflow:serving:request_latency_bucket{{{base},le="100"}} 2',
        f':tensorflow:serving:request_latency_bucket{{{base},le="+Inf"}} 3',
        f":tensorflow:serving:request_latency_sum{{{base}}} 555",
        f":tensorflow:serving:request_latency_count{{{base}}} 3",
    ]
    # Failed requests count but do not feed the latency histogram (as in TF Serving).
    assert not any('entrypoint="REST"' in line for line in lines)


def test_label_values_are_escaped_and_buckets_match_tf_serving() -> None:
    metrics = Metrics()
    metrics.record_request('a"b\\c', "Predict", "REST", grpc.StatusCode.OK, 1.0)
    assert ':tensorflow:serving:request_count{model_name="a\\"b\\\\c",status="OK"} 1' in metrics.exposition()
    assert (
        len(LATENCY_BUCKETS_US) == 33
        and LATENCY_BUCKETS_US[0] == 10
        and abs(LATENCY_BUCKETS_US[1] - 18) < 1e-9
    )


@pytest.mark.parametrize("batching", [False, True])
def test_grpc_predicts_are_counted_when_monitoring_is_on(
    tfserving_testdata: Path, tmp_path: Path, batching: bool
) -> None:
    """Batched Predicts are answered by the batch thread (deferred): they must count too."""
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    options = ServerOptions(
        enable_batching=batching,
        port=0,
        rest_api_port=0,
        bind_address="127.0.0.1",
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        monitoring_config_file=str(monitoring),
    )
    with ModelServer(options, enable_rest=True) as server:
        good = predict_pb2.PredictRequest()
        good.model_spec.name = "half_plus_two"
        good.inputs["x"].CopyFrom(from_ndarray(np.array([[2.0]], np.float32)))
        bad = predict_pb2.PredictRequest()
        bad.CopyFrom(good)
        bad.inputs["nope"].CopyFrom(from_ndarray(np.array([[2.0]], np.float32)))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(2):
                assert list(stub.Predict(good, timeout=30).outputs["y"].float_val) == [3.0]
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(bad, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=30) as answer:
            text = answer.read().decode()
    counts = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"
    }
    assert counts[':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"}'] == 2
    assert (
        counts[':tensorflow:serving:request_count{model_name="half_plus_two",status="INVALID_ARGUMENT"}'] == 1
    )
    latency = ':tensorflow:serving:request_latency_count{model_name="half_plus_two",API="Predict",entrypoint="GRPC"}'
    assert counts[latency] == 2  # successful requests feed the latency histogram

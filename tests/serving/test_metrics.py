"""Prometheus exposition with TF Serving's metric names, checked line by line."""

from __future__ import annotations

import grpc

from serving.model_server.metrics import LATENCY_BUCKETS_US, Metrics


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

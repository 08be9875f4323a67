"""Deadlines reach the run: an expired request is not run, a Session run stops at the deadline,
and a REST request past --rest_api_timeout_in_ms stops using its worker."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from serving.model_server.config import ServerOptions  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.runtime import timeout_bucket_ms  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402
from serving.model_server.server import ModelServer  # noqa: E402

# A loop of 10^10 steps runs for hours; 10^5 steps take well under a second.
ENDLESS, QUICK = 10**10, 10**5


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF1 SavedModel whose Predict counts to max(n): y = [max(n)] * len(n)."""
    base = tmp_path_factory.mktemp("slow")
    graph = tf.Graph()
    with graph.as_default():
        n = tf.compat.v1.placeholder(tf.int64, [None], name="n")
        total = tf.while_loop(lambda i: i < tf.reduce_max(n), lambda i: i + 1, [tf.constant(0, tf.int64)])[0]
        y = tf.cast(tf.fill(tf.shape(n), total), tf.float32)
        with tf.compat.v1.Session(graph=graph) as session:
            builder = tf.compat.v1.saved_model.Builder(str(base / "1"))
            signature = tf.compat.v1.saved_model.predict_signature_def({"n": n}, {"y": y})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()
    return base


def test_timeout_buckets_never_exceed_the_time_left() -> None:
    assert timeout_bucket_ms(0.0004) == 1
    # 1.25^k ms, rounded down: ..., 7.45, 9.31, 11.6 -> 10 ms left gives 9 ms.
    assert timeout_bucket_ms(0.010) == 9
    assert timeout_bucket_ms(1.0) == int(1.25**30)  # 807.8 ms: 1.25^31 = 1009.7 > 1000
    assert timeout_bucket_ms(200.0) == 0  # beyond 100 s: no timeout
    for left in (0.003, 0.05, 0.7, 3.0, 40.0):
        assert 0.8 * left * 1000 - 1 <= timeout_bucket_ms(left) <= left * 1000  # int() floors


def test_an_expired_request_is_not_run_and_a_run_stops_at_its_deadline(slow_model: Path) -> None:
    servable = Servable("slow", 1, slow_model / "1")
    assert servable.run("", {"n": np.array([QUICK, 3])})["y"].tolist() == [QUICK, QUICK]
    with pytest.raises(ServingError, match="^Deadline exceeded$") as info:
        servable.run("", {"n": np.array([QUICK])}, deadline=time.monotonic() - 1)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    with pytest.raises(ServingError) as info:
        servable.run("", {"n": np.array([ENDLESS])}, deadline=time.monotonic() + 0.3)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED  # TensorFlow's own timeout
    assert time.monotonic() - started < 5
    servable.close()


@pytest.fixture()
def rest_server(slow_model: Path) -> Iterator[ModelServer]:
    options = ServerOptions(
        port=0,
        bind_address="127.0.0.1",
        model_name="slow",
        model_base_path=str(slow_model),
        file_system_poll_wait_seconds=0,
        rest_api_timeout_in_ms=400,
        rest_api_num_threads=1,
    )
    with ModelServer(options, enable_rest=True) as server:
        yield server


def _predict(server: ModelServer, n: int) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        conn.request("POST", "/v1/models/slow:predict", body=json.dumps({"instances": [n]}).encode())
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_timed_out_rest_request_frees_its_worker(rest_server: ModelServer) -> None:
    status, body = _predict(rest_server, ENDLESS)
    # TensorFlow stops the run at the deadline (its own text), or the face answers first.
    assert status == 504 and body["error"] in ("Timed out waiting for notification", "Deadline Exceeded")
    # The only worker is free again: the endless run was stopped, not left running for hours
    # behind the 504.
    time.sleep(0.5)
    assert _predict(rest_server, 7) == (200, {"predictions": [7.0]})


def test_the_rest_queue_is_bounded(rest_server: ModelServer) -> None:
    limit = rest_server._rest_server.max_pending  # 1 worker + 4 queued
    answers: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        status, _ = _predict(rest_server, ENDLESS)
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=client) for _ in range(limit + 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers.count(503) >= 3 and set(answers) <= {503, 504}


@pytest.mark.parametrize("face", ["inline", "stock"])
def test_a_grpc_deadline_stops_the_run(slow_model: Path, face: str) -> None:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.model_server.tensors import from_ndarray

    options = ServerOptions(
        port=0,
        bind_address="127.0.0.1",
        model_name="slow",
        model_base_path=str(slow_model),
        file_system_poll_wait_seconds=0,
        grpc_max_threads=1,
        grpc_face=face,
    )

    def request(n: int) -> predict_pb2.PredictRequest:
        message = predict_pb2.PredictRequest()
        message.model_spec.name = "slow"
        message.inputs["n"].CopyFrom(from_ndarray(np.array([n], np.int64)))
        return message

    with ModelServer(options) as server, grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request(ENDLESS), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The server's only handler thread is free again: the run stopped at the deadline.
        response = stub.Predict(request(7), timeout=10)
        assert list(response.outputs["y"].float_val) == [7.0]

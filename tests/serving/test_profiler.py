"""tensorflow.ProfilerService forwarded from a gRPC server: TF Serving's trace request, errors, close."""

# TF Serving's test_profiler_service_with_valid_trace_request calls
# profiler_client.trace(<model server gRPC address>, logdir, 1000, '', 10) while requests run,
# and a trace (<logdir>/plugins/profile/<run>/<host>.xplane.pb) must appear.

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

tf = pytest.importorskip("tensorflow")

from tensorflow.python.profiler import profiler_client  # noqa: E402
from tensorflow.tsl.profiler.protobuf import profiler_options_pb2, xplane_pb2  # noqa: E402

from serving.model_server import grpc_inline  # noqa: E402
from serving.model_server.profiler import ProfilerForwarder, process_profiler_port  # noqa: E402


def _identity(data: bytes) -> bytes:
    return data


def call(
    port: int, method: str, request: bytes = b"", timeout: float = 30
) -> tuple[grpc.StatusCode, str, bytes]:
    """One raw unary call: (code, details, response bytes)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)
        try:
            return grpc.StatusCode.OK, "", stub(request, timeout=timeout)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", b""


@pytest.fixture(params=["grpc.server", "inline"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[int, ProfilerForwarder]]:
    """A gRPC server carrying only the forwarder, on a free port; both of our server kinds."""
    server: Any
    if request.param == "inline":
        if not grpc_inline.available():
            pytest.skip("grpc lacks the core API the inline server uses")
        server = grpc_inline.InlineGrpcServer([], 4)
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    forwarder = ProfilerForwarder()
    server.add_generic_rpc_handlers((forwarder,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, forwarder
    finally:
        server.stop(None)
        forwarder.close()


def test_trace_request_writes_an_xplane_of_this_process(
    served: tuple[int, ProfilerForwarder], tmp_path: Path
) -> None:
    port, _ = served
    stop = threading.Event()

    def work() -> None:  # the model server's requests in TF Serving's test
        matrix = tf.ones((64, 64))
        while not stop.is_set():
            tf.linalg.matmul(matrix, matrix)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        profiler_client.trace(f"localhost:{port}", str(tmp_path), 1000, "", 10)
    finally:
        stop.set()
        worker.join()
    traces = list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1
    space = xplane_pb2.XSpace.FromString(traces[0].read_bytes())
    names = {meta.name for plane in space.planes for meta in plane.event_metadata.values()}
    assert any("MatMul" in name for name in names)  # the ops run meanwhile were traced


def test_answers_and_errors_are_the_profiler_servers_own(served: tuple[int, ProfilerForwarder]) -> None:
    """Every method answers through the forwarder exactly as TF's server answers directly."""
    port, _ = served
    direct = process_profiler_port()
    for method in ("Terminate", "Monitor", "GetSnapshot"):
        path = f"/tensorflow.ProfilerService/{method}"
        assert call(port, path) == call(direct, path)
    # TF 2.21's answers, so the comparison above compares something:
    assert call(port, "/tensorflow.ProfilerService/Monitor")[:2] == (
        grpc.StatusCode.UNIMPLEMENTED,
        "unimplemented.",
    )
    assert call(port, "/tensorflow.ProfilerService/GetSnapshot")[:2] == (
        grpc.StatusCode.NOT_FOUND,
        "No continuous profiling session found.",
    )


def test_other_methods_are_not_served(served: tuple[int, ProfilerForwarder]) -> None:
    port, _ = served
    assert call(port, "/tensorflow.ProfilerService/Nope")[0] == grpc.StatusCode.UNIMPLEMENTED
    assert call(port, "/tensorflow.serving.PredictionService/Predict")[0] == grpc.StatusCode.UNIMPLEMENTED


class Timed(grpc.GenericRpcHandler):
    """Wraps a generic handler and records how long each of its calls ran in the server."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self.inner = inner
        self.seconds: list[float] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        found = self.inner.service(details)
        if found is None:
            return None

        def timed(request: bytes, context: Any) -> bytes:
            start = time.monotonic()
            try:
                return found.unary_unary(request, context)
            finally:
                self.seconds.append(time.monotonic() - start)

        return grpc.unary_unary_rpc_method_handler(timed, _identity, _identity)


def profile_request(duration_ms: int, repository_root: str) -> bytes:
    """A serialized ProfileRequest{duration_ms: 1, opts: 4, repository_root: 5}, as
    profiler_client.trace sends it (TensorFlow ships no Python module of profiler_service.proto)."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    opts = profiler_options_pb2.ProfileOptions(version=1, host_tracer_level=2, duration_ms=duration_ms)
    fields = {4: opts.SerializeToString(), 5: repository_root.encode()}
    message = b"\x08" + varint(duration_ms)
    for number, value in fields.items():
        message += varint(number << 3 | 2) + varint(len(value)) + value
    return message


def test_the_callers_deadline_is_forwarded(tmp_path: Path) -> None:
    """A 3 s Profile asked with a 0.5 s deadline ends in TF's server by the deadline (TF
    stops profiling early and answers), not after 3 s."""
    forwarder = ProfilerForwarder()
    timed = Timed(forwarder)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((timed,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        request = profile_request(3000, str(tmp_path))
        code = call(port, "/tensorflow.ProfilerService/Profile", request, timeout=0.5)[0]
        deadline = time.monotonic() + 10
        while not timed.seconds and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop(None)
        forwarder.close()
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert len(timed.seconds) == 1 and timed.seconds[0] < 2.0  # not the 3 s profile


def test_close_refuses_later_calls(served: tuple[int, ProfilerForwarder]) -> None:
    port, forwarder = served
    assert call(port, "/tensorflow.ProfilerService/Terminate")[0] == grpc.StatusCode.OK
    forwarder.close()
    assert call(port, "/tensorflow.ProfilerService/Terminate")[:2] == (
        grpc.StatusCode.UNAVAILABLE,
        "The profiler service is shut down",
    )


def test_start_starts_the_profiler_server_once_and_reports_a_failure() -> None:
    """start() resolves the target at once (TF Serving's service is live from start-up); a
    failed start is reported, and retried by the next call."""
    asked: list[int] = []

    def target() -> int:
        asked.append(1)
        return process_profiler_port()

    forwarder = ProfilerForwarder(target)
    try:
        assert forwarder.start() and forwarder.start()
        assert asked == [1]
    finally:
        forwarder.close()

    def broken() -> int:
        raise RuntimeError("TensorFlow's profiler server did not start")

    failing = ProfilerForwarder(broken)
    assert failing.start() is False
    assert failing.start() is False  # tried again, not remembered as started
    failing.close()

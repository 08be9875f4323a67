"""tensorflow.ProfilerService on the model server's gRPC port, forwarded to TensorFlow's own profiler server."""

# Why forwarding: TF Serving registers TF's C++ ProfilerService on its gRPC server
# (server.cc, --enable_profiler). From Python, TensorFlow exposes that service only as a server
# of its own (tf.profiler.experimental.server.start(port)), so the model server's gRPC faces
# pass /tensorflow.ProfilerService/* calls through, bytes unchanged, to one such server on a
# private port. profiler_client.trace(<model server gRPC address>, ...) then works as against
# TF Serving: the trace is taken in this process and written by it under the request's logdir.

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc

PROFILER_SERVICE = "tensorflow.ProfilerService"
# The unary methods of tsl/profiler/protobuf/profiler_service.proto (TF 2.21).
PROFILER_METHODS = (
    "Profile",
    "Terminate",
    "Monitor",
    "StartContinuousProfiling",
    "StopContinuousProfiling",
    "GetSnapshot",
)
# grpc gives a call without a deadline a time_remaining in the far future (or None).
_NO_DEADLINE_SECONDS = 365 * 24 * 3600.0
_START_ATTEMPTS = 3


def _identity(data: bytes) -> bytes:
    return data


def _unused_port() -> int:
    """A port free on every interface now (TF's profiler server binds ``[::]:port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


class _SharedProfilerServer:
    """TensorFlow's profiler server of this process, started on first use.

    One per process, on purpose: TensorFlow cannot stop a profiler server once started, and
    a profiling session is process-wide anyway, so every forwarder (several model servers in
    one test process) shares the one server.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._port: int | None = None

    def port(self) -> int:
        """The port the server answers on, starting it if needed.

        Raises:
            RuntimeError: the server did not answer on any of a few fresh ports
                (TensorFlow only logs a failed bind).
        """
        with self._lock:
            if self._port is None:
                self._port = self._start()
            return self._port

    @staticmethod
    def _start() -> int:
        import tensorflow as tf

        for _ in range(_START_ATTEMPTS):
            port = _unused_port()
            tf.profiler.experimental.server.start(port)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as probe:
                try:
                    grpc.channel_ready_future(probe).result(timeout=5)
                except grpc.FutureTimeoutError:
                    continue  # another process took the port first
            return port
        raise RuntimeError("TensorFlow's profiler server did not start")


_PROCESS_PROFILER = _SharedProfilerServer()


def process_profiler_port() -> int:
    """The port of this process's TensorFlow profiler server (started on first call)."""
    return _PROCESS_PROFILER.port()


class ProfilerForwarder(grpc.GenericRpcHandler):
    """A generic handler serving tensorflow.ProfilerService by forwarding to TF's server.

    Register it with ``server.add_generic_rpc_handlers((forwarder,))`` on grpc.server or the
    InlineGrpcServer. Each call goes out with the caller's remaining deadline; the answer, or
    the status code and details, come back unchanged.

    Args:
        target_port: returns the port of the server to forward to; by default this process's
            TensorFlow profiler server, started at the first ProfilerService call.
    """

    def __init__(self, target_port: Callable[[], int] = process_profiler_port) -> None:
        self._target_port = target_port
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._closed = False
        self._handlers = {
            f"/{PROFILER_SERVICE}/{name}": grpc.unary_unary_rpc_method_handler(
                self._forwarding(f"/{PROFILER_SERVICE}/{name}"),
                request_deserializer=_identity,
                response_serializer=_identity,
            )
            for name in PROFILER_METHODS
        }

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The forwarding handler of a ProfilerService method; None for any other method."""
        return self._handlers.get(handler_call_details.method)

    def _forwarding(self, method: str) -> Callable[[bytes, Any], bytes]:
        def forward(request: bytes, context: Any) -> bytes:
            try:
                channel = self._open()
            except RuntimeError as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                raise  # not reached: abort() raises
            remaining = context.time_remaining()
            timeout = None if remaining is None or remaining > _NO_DEADLINE_SECONDS else remaining
            call = channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)
            try:
                return call(request, timeout=timeout)
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")
                raise  # not reached: abort() raises

        return forward

    def start(self) -> bool:
        """Start the profiler server now rather than at the first call; whether it started.

        TF Serving's ProfilerService is live from start-up, so a trace request sent together
        with the first requests (as TF Serving's test does) covers them; started lazily, the
        profiler server's start-up (about 0.2 s) would open the trace window after they ran.
        A failed start is retried at the first call, which then answers UNAVAILABLE.
        """
        try:
            self._open()
        except RuntimeError:
            return False
        return True

    def _open(self) -> grpc.Channel:
        with self._lock:
            if self._closed:
                raise RuntimeError("The profiler service is shut down")
            if self._channel is None:
                self._channel = grpc.insecure_channel(f"127.0.0.1:{self._target_port()}")
            return self._channel

    def close(self) -> None:
        """Close the forwarding channel; later ProfilerService calls fail with UNAVAILABLE.

        TensorFlow's profiler server itself runs until the process exits (it has no stop).
        """
        with self._lock:
            self._closed = True
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

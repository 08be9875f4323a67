"""InlineGrpcServer on its own, over a real channel: replies, statuses, concurrency, shutdown."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2

from serving.model_server import grpc_inline
from serving.model_server.grpc_inline import InlineContext, InlineGrpcServer, Reply, inline_server

pytestmark = pytest.mark.skipif(not grpc_inline.available(), reason="grpc lacks the core API")


class _Status(grpc.Status):
    """grpc.Status is an interface; abort_with_status reads these three fields."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details, self.trailing_metadata = code, details, ()


def _start(
    methods: dict[str, Callable[[Any, Any], Any]],
    *,
    threads: int = 4,
    options: tuple[tuple[str, Any], ...] = (),
    deserializer: Callable[[bytes], Any] | None = None,
) -> tuple[InlineGrpcServer, grpc.Channel]:
    server = InlineGrpcServer(options, threads=threads)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=deserializer)
        for name, fn in methods.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[InlineGrpcServer, grpc.Channel]]]:
    started: list[tuple[InlineGrpcServer, grpc.Channel]] = []

    def start(
        methods: dict[str, Callable[[Any, Any], Any]], **kwargs: Any
    ) -> tuple[InlineGrpcServer, grpc.Channel]:
        started.append(_start(methods, **kwargs))
        return started[-1]

    yield start
    for server, channel in started:
        channel.close()
        assert server.stop(None).wait(10)


def _call(channel: grpc.Channel, method: str, payload: bytes = b"", timeout: float | None = 10) -> bytes:
    return channel.unary_unary(f"/t.S/{method}")(payload, timeout=timeout)


def _in_background(channel: grpc.Channel, method: str) -> tuple[threading.Thread, list[Any]]:
    """Start a call on another thread; the list gets its reply or its RpcError."""
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(_call(channel, method))
        except grpc.RpcError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def _error(channel: grpc.Channel, method: str, payload: bytes = b"") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, method, payload)
    return info.value


def test_replies_and_statuses(running) -> None:
    def fail(request: bytes, context: Any) -> bytes:
        raise ValueError("boom")

    def set_code(request: bytes, context: Any) -> bytes:
        context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
        context.set_details("not yet")
        return b"ignored"

    _, channel = running(
        {
            "Echo": lambda request, context: request[::-1],
            "Abort": lambda request, context: context.abort(
                grpc.StatusCode.NOT_FOUND, "no " + request.decode()
            ),
            "Fail": fail,
            "AbortStatus": lambda request, context: context.abort_with_status(
                _Status(grpc.StatusCode.ABORTED, "raced")
            ),
            "SetCode": set_code,
        }
    )
    for index in range(50):  # many calls through the same few threads
        payload = f"abc{index}".encode()
        assert _call(channel, "Echo", payload) == bytes(reversed(payload))
    assert _call(channel, "Echo", b"x" * 3_000_000) == b"x" * 3_000_000  # several HTTP/2 frames

    error = _error(channel, "Abort", b"model")
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no model")
    error = _error(channel, "AbortStatus")
    assert (error.code(), error.details()) == (grpc.StatusCode.ABORTED, "raced")
    error = _error(channel, "Fail")
    assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, "Exception calling application: boom")
    error = _error(channel, "SetCode")
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "not yet")
    error = _error(channel, "Missing")
    assert (error.code(), error.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


def test_undecodable_request_is_internal(running) -> None:
    _, channel = running(
        {"Predict": lambda request, context: request.SerializeToString()},
        deserializer=predict_pb2.PredictRequest.FromString,
    )
    error = _error(channel, "Predict", b"\xff\xff\xff")
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "Exception deserializing request!")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    assert (
        predict_pb2.PredictRequest.FromString(_call(channel, "Predict", request.SerializeToString()))
        == request
    )


def test_deadline_and_metadata_reach_the_handler(running) -> None:
    seen: dict[str, Any] = {}

    def look(request: bytes, context: Any) -> bytes:
        seen["remaining"] = context.time_remaining()
        seen["metadata"] = dict(context.invocation_metadata())
        seen["peer"] = context.peer()
        seen["active"] = context.is_active()
        return b""

    _, channel = running({"Look": look})
    channel.unary_unary("/t.S/Look")(b"", timeout=5, metadata=(("x-key", "v"),))
    assert 0 < seen["remaining"] <= 5.1  # the timeout header rounds up a little
    assert seen["metadata"]["x-key"] == "v"
    assert seen["peer"].startswith("ipv4:127.0.0.1:") and seen["active"]
    channel.unary_unary("/t.S/Look")(b"")
    assert seen["remaining"] > 1e9  # no deadline: grpc's far future


def test_concurrent_calls_beyond_the_pollers_reach_free_threads(running) -> None:
    """Three handlers that only finish together: the two pollers must bring in a third thread."""
    barrier = threading.Barrier(3, timeout=10)

    def meet(request: bytes, context: Any) -> bytes:
        barrier.wait()
        return b"met"

    _, channel = running({"Meet": meet}, threads=3)
    results: list[bytes] = []
    callers = [threading.Thread(target=lambda: results.append(_call(channel, "Meet"))) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(20)
    assert results == [b"met"] * 3


def test_stop_lets_running_calls_finish_within_grace(running) -> None:
    started = threading.Event()

    def slow(request: bytes, context: Any) -> bytes:
        started.set()
        time.sleep(0.5)
        return b"done"

    server, channel = running({"Slow": slow})
    caller, result = _in_background(channel, "Slow")
    assert started.wait(10)
    stopped = server.stop(5)
    caller.join(10)
    assert result == [b"done"]
    assert stopped.wait(10)
    error = _error(channel, "Slow")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert server.stop(None) is stopped  # stopping again is harmless


def test_stop_without_grace_cancels_running_calls(running) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck(request: bytes, context: Any) -> bytes:
        started.set()
        release.wait(10)
        return b"late"

    server, channel = running({"Stuck": stuck})
    caller, errors = _in_background(channel, "Stuck")
    assert started.wait(10)
    begin = time.monotonic()
    stopped = server.stop(None)
    caller.join(10)
    assert time.monotonic() - begin < 5  # the client hears at once, not after the handler
    assert [e.code() for e in errors] == [grpc.StatusCode.UNAVAILABLE]  # core: GOAWAY, calls cancelled
    release.set()
    assert stopped.wait(10)


def test_channel_arguments_apply(running) -> None:
    _, channel = running(
        {"Echo": lambda request, context: request}, options=(("grpc.max_receive_message_length", 100),)
    )
    assert _call(channel, "Echo", b"y" * 100) == b"y" * 100
    assert _error(channel, "Echo", b"y" * 101).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_falls_back_where_the_core_api_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(grpc_inline, "_REQUIRED", ("NoSuchThing",))
    assert not grpc_inline.available()
    assert inline_server((), 4, lambda: "fallback") == "fallback"


def test_deferred_replies_come_from_other_threads(running) -> None:
    """context.defer(): the handler returns at once and another thread answers, exactly once."""

    def later(request: bytes, context: Any) -> bytes:
        reply = context.defer()

        def answer() -> None:
            time.sleep(0.05)
            if request == b"fail":
                reply.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
            else:
                reply.send(request + b"!")
            reply.send(b"second answer is ignored")

        threading.Thread(target=answer).start()
        return b"the return value is ignored"

    _, channel = running({"Later": later}, threads=1)
    assert _call(channel, "Later", b"hi") == b"hi!"
    error = _error(channel, "Later", b"fail")
    assert (error.code(), error.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
    # One thread, yet many calls wait at once: none holds the thread while it waits.
    results: list[bytes] = []
    callers = [
        threading.Thread(target=lambda i=i: results.append(_call(channel, "Later", b"%d" % i)))
        for i in range(8)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(20)
    assert sorted(results) == sorted(b"%d!" % i for i in range(8))


def test_stop_waits_for_deferred_replies(running) -> None:
    replies: list[Any] = []
    deferred = threading.Event()

    def park(request: bytes, context: Any) -> bytes:
        replies.append(context.defer())
        deferred.set()
        return b""

    server, channel = running({"Park": park})
    caller, result = _in_background(channel, "Park")
    assert deferred.wait(10)
    stopped = server.stop(5)
    assert not stopped.wait(0.3)  # the deferred call keeps the server alive within the grace
    replies[0].send(b"answered")
    caller.join(10)
    assert result == [b"answered"]
    assert stopped.wait(10)


def test_handler_failing_around_a_deferred_reply_answers_once(running) -> None:
    """A handler that defers and then raises: the call gets one answer, whichever came first,
    and the server still counts it finished (stop completes instead of waiting forever)."""

    def sent_then_fails(request: bytes, context: Any) -> bytes:
        context.defer().send(b"sent first")
        raise RuntimeError("after the reply")

    def fails_then_sends(request: bytes, context: Any) -> bytes:
        reply = context.defer()
        threading.Timer(0.2, reply.send, args=(b"too late",)).start()
        raise RuntimeError("before the reply")

    server, channel = running({"SentThenFails": sent_then_fails, "FailsThenSends": fails_then_sends})
    assert _call(channel, "SentThenFails") == b"sent first"
    error = _error(channel, "FailsThenSends")
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNKNOWN,
        "Exception calling application: before the reply",
    )
    time.sleep(0.4)  # the late send has run (and was ignored)
    assert server.stop(5).wait(10)


def test_answered_calls_leave_nothing_to_the_garbage_collector(running) -> None:
    """Reference counting frees every call's objects once it is answered. A reference cycle
    (context <-> Reply, before) leaves them, grpc's call among them, to the cyclic collector,
    whose collections then stall the server with the GIL held."""

    def direct(request: bytes, context: Any) -> bytes:
        return request

    def deferred(request: bytes, context: Any) -> bytes:
        reply = context.defer()
        threading.Thread(target=reply.send, args=(request,)).start()
        return b""

    _, channel = running({"Direct": direct, "Deferred": deferred})
    assert _call(channel, "Deferred", b"warm") == b"warm"
    gc.collect()
    gc.disable()
    try:
        for i in range(10):
            assert _call(channel, "Direct", b"d%d" % i) == b"d%d" % i
            assert _call(channel, "Deferred", b"r%d" % i) == b"r%d" % i
        time.sleep(0.3)  # the answering threads end, the pollers drop their last event
        live = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (InlineContext, Reply))]
    finally:
        gc.enable()
    assert live == []

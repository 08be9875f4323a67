"""InlineGrpcServer when grpc's private API misbehaves: every call is answered, none hangs."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from serving.model_server import grpc_inline
from serving.model_server.grpc_inline_calls import SERVER_ERROR, Calls
from tests.serving import test_grpc_inline
from tests.serving.test_grpc_inline import _call, _error, _in_background

running = test_grpc_inline.running  # the fixture: servers started on free ports, stopped after

pytestmark = pytest.mark.skipif(not grpc_inline.available(), reason="grpc lacks the core API")


class _Without:
    """grpc's Cython module as a release that renamed ``missing`` would look."""

    def __init__(self, module: Any, missing: str) -> None:
        self._module, self._missing = module, missing

    def __getattr__(self, name: str) -> Any:
        if name == self._missing:
            raise AttributeError(f"module 'cygrpc' has no attribute {name!r}")
        return getattr(self._module, name)


def _echo(request: bytes, context: Any) -> bytes:
    return request


def test_a_failure_reading_the_message_answers_internal(running, monkeypatch) -> None:
    """An event whose message cannot be read (the API changed): INTERNAL now, not a hang."""
    server, channel = running({"Echo": _echo})
    run = Calls._run

    def broken(self: Calls, context: Any, received: Any, event: Any) -> None:
        if received.method == "/t.S/Echo" and event.success:
            event.batch_operations[0].message_v2()  # what a renamed accessor raises
        run(self, context, received, event)

    monkeypatch.setattr(Calls, "_run", broken)
    begin = time.monotonic()
    error = _error(channel, "Echo", b"x")
    assert time.monotonic() - begin < 5  # answered, not left to the 10 s deadline
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, SERVER_ERROR)
    monkeypatch.setattr(Calls, "_run", run)
    assert _call(channel, "Echo", b"still serving") == b"still serving"
    assert server.stop(5).wait(10)  # the failed call was counted answered


def test_a_failure_accepting_a_call_answers_internal(running) -> None:
    server, channel = running({"Echo": _echo})
    calls = server._calls
    calls._cygrpc = _Without(calls._cygrpc, "ReceiveMessageOperation")
    error = _error(channel, "Echo", b"x")
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, SERVER_ERROR)


def test_a_failure_starting_the_answer_cancels_the_call(running, monkeypatch) -> None:
    """When even the answer batch cannot start, the call is cancelled with INTERNAL."""
    server, channel = running({"Echo": _echo})
    monkeypatch.setattr(server._calls, "_cygrpc", _Without(server._calls._cygrpc, "SendMessageOperation"))
    begin = time.monotonic()
    error = _error(channel, "Echo", b"x")
    assert time.monotonic() - begin < 5
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, SERVER_ERROR)
    assert server.stop(5).wait(10)


def test_a_failing_generic_handler_is_unknown_as_on_grpc_server(running) -> None:
    class Failing(grpc.GenericRpcHandler):
        def service(self, handler_call_details: grpc.HandlerCallDetails) -> None:
            raise KeyError("lookup")

    server, channel = running({"Echo": _echo})
    server.add_generic_rpc_handlers((Failing(),))
    error = _error(channel, "Other", b"x")
    assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, "Error in service handler!")
    assert _call(channel, "Echo", b"e") == b"e"  # looked up before the failing handler


def test_a_failing_poll_cancels_every_call_and_shuts_down(running) -> None:
    """An exception from the completion queue itself: calls in flight are cancelled (their
    clients hear at once), the server shuts down and reports it stopped."""
    started, release = threading.Event(), threading.Event()

    def stuck(request: bytes, context: Any) -> bytes:
        started.set()
        release.wait(10)
        return b"late"

    server, channel = running({"Stuck": stuck, "Echo": _echo})
    caller, outcome = _in_background(channel, "Stuck")
    assert started.wait(10)

    poll = server._poll

    def broken() -> Any:
        poll()
        raise ValueError("unexpected event type")

    server._poll = broken
    begin = time.monotonic()
    # The thread waiting in the real poll accepts the call, then loses its message event.
    error = _error(channel, "Echo", b"x")
    caller.join(10)
    assert time.monotonic() - begin < 5  # both clients hear at once, not at their deadline
    assert error.code() == grpc.StatusCode.CANCELLED
    assert [e.code() for e in outcome] == [grpc.StatusCode.UNAVAILABLE]
    release.set()
    assert server.failed
    assert server.stop(None).wait(10)

"""A unary gRPC server that runs each handler in the thread that polled its message.

Why: grpc's sync server (grpc.server) polls every event in one thread, hands each new call to
a pool thread, and then hands that thread its request message through a condition variable:
two thread hops per call before the handler starts, and each hop that lands on a halted
vCPU costs a wake-up. TF Serving's C++ server has no such hops. Here at most two threads
poll one completion queue of grpc's core; whichever receives a call's message runs the
handler there and starts the reply. Measured on the CTR model (benchmarks/bench_model_server.py,
same run): a 500-row Predict 1.48-1.49x the in-process call against 1.56x on grpc.server, and
without batching 2,390-2,420 req/s against 1,500 (32 clients x 16 rows).

It serves unary-unary methods only (all of TF Serving's API) and reads the handlers the
generated ``add_*Servicer_to_server`` functions register. It is built on grpc's Cython layer
(``grpc._cython.cygrpc``), the layer grpc.server and grpc.aio are themselves written on;
that layer is not public API, so ``available()`` checks for what this module uses, and
create_grpc_server falls back to grpc.server where it is missing.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

log = logging.getLogger(__name__)

_REQUIRED = (
    "CompletionQueue",
    "Server",
    "ReceiveMessageOperation",
    "SendInitialMetadataOperation",
    "SendMessageOperation",
    "SendStatusFromServerOperation",
    "ReceiveCloseOnServerOperation",
    "CompletionType",
    "StatusCode",
)


def _cygrpc() -> Any:
    from grpc._cython import cygrpc

    return cygrpc


def available() -> bool:
    """Whether the installed grpc has the core-level pieces this server uses."""
    try:
        cygrpc = _cygrpc()
    except ImportError:
        return False
    return all(hasattr(cygrpc, name) for name in _REQUIRED)


_NO_RESPONSE = object()  # InlineContext.answer without a message


class _Abort(Exception):
    """Raised by context.abort: ends the handler, the loop sends the status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _HandlerCallDetails(grpc.HandlerCallDetails):
    """What a generic handler looks methods up by."""

    def __init__(self, method: str, invocation_metadata: Any) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


class InlineContext:
    """The part of grpc.ServicerContext that unary handlers use, plus ``defer()``.

    abort() raises like grpc's does; set_code/set_details without abort give the status a
    normally returned response is sent with (grpc's sync server does the same).
    """

    __slots__ = ("_server", "_received", "code", "details", "deferred", "_answered")

    def __init__(self, server: InlineGrpcServer, received: _Received) -> None:
        self._server = server
        self._received = received
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.deferred = False
        self._answered = False

    def defer(self) -> Reply:
        """Answer later: the handler's return value is ignored, and the call is answered
        when the returned Reply's send() or abort() is called, from any thread. Why: a
        request waiting for its batch then holds no thread (the batch's thread answers it).

        The context keeps only a flag, not the Reply: a context <-> Reply reference cycle
        would leave every call's objects (grpc's call among them) to the cyclic garbage
        collector, whose collections then ran 4.5 ms with the GIL held every ~150 ms."""
        self.deferred = True
        return Reply(self)

    def answer(self, code: grpc.StatusCode, details: str, response: Any = _NO_RESPONSE) -> None:
        """Send the call's one answer: ``response`` (with OK) or the status alone. Only the
        first answer counts, from whichever thread; it also ends the call's pending count."""
        with self._server._lock:
            if self._answered:
                return
            self._answered = True
        try:
            if response is _NO_RESPONSE:
                self._server._finish(self._received.call, None, code, details)
            else:
                self._server._send(self._received, response)
        finally:
            self._server._replied()

    def time_remaining(self) -> float:
        """Seconds before the client's deadline, as grpc's context gives them (a call without
        a deadline has one in the far future)."""
        return max(self._received.deadline - time.time(), 0.0)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status code other than OK")
        raise _Abort(code, details)

    def abort_with_status(self, status: grpc.Status) -> None:
        raise _Abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def invocation_metadata(self) -> Any:
        return self._received.metadata

    def peer(self) -> str:
        return self._received.call.peer().decode()

    def is_active(self) -> bool:
        return True


class _Received:
    """Tag of a call's ReceiveMessage batch: what the handler needs once the message is in."""

    __slots__ = ("call", "method", "deadline", "metadata", "handler", "quick")

    def __init__(
        self, call: Any, method: str, deadline: float, metadata: Any, handler: Any, quick: bool
    ) -> None:
        self.call = call
        self.method = method
        self.deadline = deadline
        self.metadata = metadata
        self.handler = handler
        self.quick = quick


_REQUEST_CALL = "request_call"
_SHUTDOWN = "shutdown"
_FINISHED = "finished"


class InlineGrpcServer:
    """grpc.Server's lifecycle (add_*_port, start, stop, wait_for_termination) for unary methods.

    ``threads`` is the most handlers that run at once (grpc.server's pool size plays the same
    role). At most ``pollers`` threads wait on the completion queue; a thread that takes a
    handler while no other polls or is about to wakes (or starts) one, so concurrent calls
    still reach a free thread. Why not let every thread poll: with 64 threads waiting on the
    queue each Predict measured ~0.04 ms slower than with 2 to 16; and why not wake a thread
    on every handler: that is a thread switch per call, the cost this server exists to avoid.

    ``thread_init`` runs first in every thread (affinity.thread_pinner).

    ``quick_methods`` (full names, "/package.Service/Method") are handlers that return at
    once, typically by deferring their reply: they wake no other thread. The batching Predict
    checks and queues its request (and processes the batch when its request fills one, while
    the other poller keeps polling); waking a spare for each would add a thread switch per call.
    """

    def __init__(
        self,
        options: Sequence[tuple[str, Any]] = (),
        threads: int = 16,
        pollers: int = 2,
        quick_methods: Iterable[str] = (),
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        cygrpc = _cygrpc()
        self._cygrpc = cygrpc
        self._queue = cygrpc.CompletionQueue()
        self._server = cygrpc.Server(tuple(options), False)
        self._server.register_completion_queue(self._queue)
        self._max_threads = max(1, threads)
        self._max_pollers = max(1, min(pollers, self._max_threads))
        self._quick = frozenset(quick_methods)
        self._thread_init = thread_init
        self._generic: list[grpc.GenericRpcHandler] = []
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._threads = 0  # started and not yet ended
        self._polling = 0  # of those, waiting on the queue
        self._parked = 0  # of those, waiting to be woken as a poller
        self._short = 0  # of those, handling an event that is not a handler run
        self._pending = 0  # calls whose handler runs or whose deferred reply is not sent yet
        self._queue_closed = False
        self._started = False
        self._stopping = False
        self._shut_down = False
        self._stopped = threading.Event()
        self._status_ok = cygrpc.StatusCode.ok
        self._queue_shutdown = cygrpc.CompletionType.queue_shutdown
        self._queue_timeout = cygrpc.CompletionType.queue_timeout

    # --- grpc.Server's registration API (what generated add_*_to_server code calls) ---

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for method, handler in handlers.items():
            self._handlers[f"/{service}/{method}"] = handler

    def add_insecure_port(self, address: str) -> int:
        """Bind; returns the port (0 when it could not bind, as grpc's core reports it)."""
        return int(self._server.add_http2_port(address.encode()))

    # --- lifecycle ---

    def start(self) -> None:
        with self._lock:
            if self._started:
                raise ValueError("Cannot start already-started server!")
            self._started = True
            self._server.start()
            for _ in range(self._max_threads):
                self._server.request_call(self._queue, self._queue, _REQUEST_CALL)
            for _ in range(self._max_pollers):
                self._start_thread_locked()

    def stop(self, grace: float | None) -> threading.Event:
        """Refuse new calls; cancel the ones still running after ``grace`` seconds (now if None).

        Returns an event that is set once every thread has ended, as grpc.Server.stop does.
        """
        with self._lock:
            if not self._started:
                self._stopped.set()
                return self._stopped
            if not self._stopping:
                self._stopping = True
                self._wake.notify_all()  # parked threads poll until the queue shuts down
                self._server.shutdown(self._queue, _SHUTDOWN)
                if grace is None or grace <= 0:
                    self._server.cancel_all_calls()
                else:
                    threading.Thread(target=self._cancel_after, args=(grace,), daemon=True).start()
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until stopped (True) or ``timeout`` passed (False)."""
        return self._stopped.wait(timeout)

    def _cancel_after(self, grace: float) -> None:
        if not self._stopped.wait(grace):
            with self._lock:
                if not self._shut_down:
                    self._server.cancel_all_calls()

    # --- the threads ---

    def _start_thread_locked(self) -> None:
        self._threads += 1
        thread = threading.Thread(target=self._work, name=f"grpc-inline-{self._threads}", daemon=True)
        thread.start()

    def _add_poller_locked(self) -> None:
        """Called when the last poller takes a handler: wake a parked thread, or start one."""
        if self._parked:
            self._wake.notify()
        elif self._threads < self._max_threads:
            self._start_thread_locked()
        # else every thread runs a handler: new events wait for the first to finish

    def _work(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        short = False  # the last event was not a handler run
        try:
            while True:
                with self._lock:
                    if short:
                        self._short -= 1
                    while self._polling >= self._max_pollers and not self._stopping:
                        self._parked += 1
                        self._wake.wait()
                        self._parked -= 1
                    self._polling += 1
                event = self._queue.poll()
                kind = event.completion_type
                with self._lock:
                    self._polling -= 1
                    if kind == self._queue_shutdown:
                        short = False
                        return
                    tag = event.tag
                    handler = type(tag) is _Received
                    short = not handler or tag.quick
                    if handler:
                        self._pending += 1
                    if short:
                        self._short += 1
                    elif not (self._polling or self._short or self._stopping):
                        # Nobody will poll soon: another thread must, or a second call
                        # waits for this handler. (A thread on a short event polls again
                        # shortly.)
                        self._add_poller_locked()
                if kind == self._queue_timeout:
                    continue
                try:
                    if handler:
                        self._respond(tag, event)
                    else:
                        self._dispatch(tag, event)
                except Exception:  # a bug here must not end the thread
                    log.exception("gRPC inline server: event handling failed")
                event = tag = None  # release the call before blocking again
        finally:
            with self._lock:
                self._threads -= 1
                last = self._threads == 0
            if last:
                self._server.destroy()
                self._stopped.set()

    def _replied(self) -> None:
        """A call's reply has started (or it never will): one fewer pending."""
        with self._lock:
            self._pending -= 1
            self._close_queue_locked()

    def _close_queue_locked(self) -> None:
        """Once the server has shut down and no handler or deferred reply is left, close the
        queue (grpc's core aborts the process if a reply starts on a closed queue)."""
        if self._shut_down and not self._pending and not self._queue_closed:
            self._queue_closed = True
            self._queue.shutdown()

    def _dispatch(self, tag: Any, event: Any) -> None:
        """Every event but a handler's message."""
        if tag is _REQUEST_CALL:
            self._accept(event)
        elif tag is _SHUTDOWN:
            with self._lock:
                self._shut_down = True
                self._close_queue_locked()
        # _FINISHED: the reply batch completed; nothing is left to do for the call.

    def _accept(self, event: Any) -> None:
        """A new call: ask for another, then for this call's message."""
        with self._lock:
            if not self._stopping:
                self._server.request_call(self._queue, self._queue, _REQUEST_CALL)
        if not event.success:
            return  # the server is shutting down
        cygrpc = self._cygrpc
        details = event.call_details
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        handler = self._lookup(method, event.invocation_metadata)
        call = event.call
        if handler is None or handler.request_streaming or handler.response_streaming:
            self._finish(call, None, grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
            return
        call.start_server_batch(
            (cygrpc.ReceiveMessageOperation(0),),
            _Received(
                call, method, details.deadline, event.invocation_metadata, handler, method in self._quick
            ),
        )

    def _lookup(self, method: str, metadata: Any) -> grpc.RpcMethodHandler | None:
        if method in self._handlers:
            return self._handlers[method]
        found = None
        call_details = _HandlerCallDetails(method, metadata)
        for generic in self._generic:
            found = generic.service(call_details)
            if found is not None:
                break
        if len(self._handlers) < 1024:  # a client can name any method: bound the cache
            self._handlers[method] = found
        return found

    def _respond(self, received: _Received, event: Any) -> None:
        """The message is in: run the handler in this thread and start the reply.

        Every path answers through ``context.answer`` (here, or later through the Reply the
        handler deferred to), which also ends the call's pending count exactly once.
        """
        if not event.success:  # cancelled before the message arrived: nothing to answer
            self._replied()
            return
        context = InlineContext(self, received)
        data = event.batch_operations[0].message()
        handler = received.handler
        if data is None:
            context.answer(
                grpc.StatusCode.UNIMPLEMENTED, f'"{received.method}" requires exactly one request message.'
            )
            return
        try:
            request = handler.request_deserializer(data) if handler.request_deserializer else data
        except Exception:
            log.exception("Exception deserializing request for %s", received.method)
            context.answer(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
            return
        try:
            response = handler.unary_unary(request, context)
        except _Abort as abort:
            context.answer(abort.code, abort.details)
            return
        except Exception as exc:
            traceback.print_exc()
            context.answer(grpc.StatusCode.UNKNOWN, f"Exception calling application: {exc}")
            return
        if context.deferred:
            return  # deferred: the Reply answers
        if context.code != grpc.StatusCode.OK:
            context.answer(context.code, context.details)
        else:
            context.answer(grpc.StatusCode.OK, "", response)

    def _send(self, received: _Received, response: Any) -> None:
        handler = received.handler
        try:
            payload = handler.response_serializer(response) if handler.response_serializer else response
        except Exception:
            log.exception("Exception serializing response for %s", received.method)
            self._finish(received.call, None, grpc.StatusCode.INTERNAL, "Failed to serialize response!")
            return
        self._finish(received.call, payload, grpc.StatusCode.OK, "")

    def _finish(self, call: Any, payload: bytes | None, code: grpc.StatusCode, details: str) -> None:
        """One batch: initial metadata, the message (if any), the status, and the close."""
        cygrpc = self._cygrpc
        status = self._status_ok if code == grpc.StatusCode.OK else cygrpc.StatusCode(code.value[0])
        operations: list[Any] = [cygrpc.SendInitialMetadataOperation(None, 0)]
        if payload is not None:
            operations.append(cygrpc.SendMessageOperation(payload, 0))
        operations.append(cygrpc.SendStatusFromServerOperation(None, status, details.encode(), 0))
        operations.append(cygrpc.ReceiveCloseOnServerOperation(0))
        call.start_server_batch(operations, _FINISHED)


class Reply:
    """Completes a call whose handler returned before its result existed (``context.defer()``).

    Either method may be called from any thread, once; later calls are ignored (so a handler
    that fails after deferring still answers exactly once).
    """

    __slots__ = ("_context",)

    def __init__(self, context: InlineContext) -> None:
        self._context = context

    def send(self, response: Any) -> None:
        self._context.answer(grpc.StatusCode.OK, "", response)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.answer(code, details)


def inline_server(
    options: Sequence[tuple[str, Any]],
    threads: int,
    fallback: Callable[[], Any],
    quick_methods: Iterable[str] = (),
    thread_init: Callable[[], None] | None = None,
) -> InlineGrpcServer | Any:
    """An InlineGrpcServer where grpc has what it needs, else ``fallback()`` (grpc.server)."""
    if available():
        return InlineGrpcServer(options, threads, quick_methods=quick_methods, thread_init=thread_init)
    log.warning("grpc %s lacks the core API the inline server uses; using grpc.server", grpc.__version__)
    return fallback()

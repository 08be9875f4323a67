"""InlineGrpcServer: grpc.Server's lifecycle over one completion queue polled by a few threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from serving.model_server.grpc_inline_calls import Calls, load_cygrpc
from serving.model_server.grpc_inline_context import Received

log = logging.getLogger(__name__)

_REQUEST_CALL = "request_call"
_SHUTDOWN = "shutdown"


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

    An exception outside any one call (grpc's core API behaving unexpectedly) could leave
    later calls unanswered, so the server then cancels every call and shuts itself down
    (``failed`` is set): clients hear UNAVAILABLE at once instead of their deadline later.
    """

    def __init__(
        self,
        options: Sequence[tuple[str, Any]] = (),
        threads: int = 16,
        pollers: int = 2,
        quick_methods: Iterable[str] = (),
        thread_init: Callable[[], None] | None = None,
    ) -> None:
        cygrpc = load_cygrpc()
        self._queue = cygrpc.CompletionQueue()
        self._server = cygrpc.Server(tuple(options), False)
        self._server.register_completion_queue(self._queue)
        self._poll = self._queue.poll  # the loop's one wait (and the tests' seam into it)
        self._calls = Calls(cygrpc, quick_methods, self._replied)
        self._max_threads = max(1, threads)
        self._max_pollers = max(1, min(pollers, self._max_threads))
        self._thread_init = thread_init
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
        self.failed = False
        self._stopped = threading.Event()
        self._queue_shutdown = cygrpc.CompletionType.queue_shutdown
        self._queue_timeout = cygrpc.CompletionType.queue_timeout

    # --- grpc.Server's registration API (what generated add_*_to_server code calls) ---

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._calls.add_generic(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._calls.add_registered(service, handlers)

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
        """Block until stopped; True when ``timeout`` passed first (grpc.Server's meaning)."""
        return not self._stopped.wait(timeout)

    def _cancel_after(self, grace: float) -> None:
        if not self._stopped.wait(grace):
            with self._lock:
                if not self._shut_down:
                    self._server.cancel_all_calls()

    def _fail(self) -> None:
        """The event loop failed outside any one call: cancel every call and shut down."""
        log.exception(
            "gRPC inline server: its event loop failed (grpc %s); cancelling every call and shutting down",
            grpc.__version__,
        )
        self.failed = True
        try:
            self.stop(None)
        except Exception:
            log.exception("gRPC inline server: shutting down failed")

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
        try:
            if self._thread_init is not None:
                self._thread_init()
        except Exception:
            log.exception("gRPC inline server: thread_init failed; the thread serves as it is")
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
                try:
                    event = self._poll()
                    kind, tag = event.completion_type, event.tag
                except Exception:
                    with self._lock:
                        self._polling -= 1
                    self._fail()
                    return  # polling is broken: this thread cannot serve
                with self._lock:
                    self._polling -= 1
                    if kind == self._queue_shutdown:
                        short = False
                        return
                    handler = type(tag) is Received
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
                        self._calls.respond(tag, event)  # answers the call on every path
                    else:
                        self._dispatch(tag, event)
                except Exception:
                    self._fail()
                event = tag = None  # release the call before blocking again
        finally:
            with self._lock:
                self._threads -= 1
                last = self._threads == 0
            if last:
                if self._shut_down:  # else (after a failure) destroy() would wait forever
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
        """Every event but a handler's message; the answer batches' events need nothing."""
        if tag is _REQUEST_CALL:
            try:  # ask for the next call first, then read this one's message
                with self._lock:
                    if not self._stopping:
                        self._server.request_call(self._queue, self._queue, _REQUEST_CALL)
            finally:
                self._calls.accept(event)
        elif tag is _SHUTDOWN:
            with self._lock:
                self._shut_down = True
                self._close_queue_locked()

"""The gRPC face on grpc.aio, run on its own event-loop thread behind grpc.Server's start/stop."""

# Why asyncio: the sync grpc server hands every call from its polling thread to a pool thread
# and back, which on a GIL-bound process costs more than our whole Predict handler. An aio
# server runs the request/response plumbing on one thread; only the model work leaves it
# (a small pool for direct runs, the batch threads when batching, awaited as futures).

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from typing import Any

import grpc


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (a dependency on POSIX), else asyncio's own.

    The loop thread is what limits batched throughput (it holds the GIL for nearly all of a
    request's Python work); uvloop's cheaper callbacks and futures measured about +6% req/s
    with 32 clients (bench_model_server.py, 3,180-3,250 -> 3,390-3,400 req/s).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class AioGrpcServer:
    """A ``grpc.aio`` server driven from synchronous code (what ModelServer expects).

    The event loop lives on a daemon thread; ``start`` and ``stop`` block until done.

    Args:
        options: channel arguments for the server.
        executors: the pools that handlers run work in; shut down by ``stop``.
    """

    def __init__(self, options: list[tuple[str, Any]], executors: list[futures.ThreadPoolExecutor]) -> None:
        self.executors = executors
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio-loop", daemon=True)
        self._thread.start()
        self._server: grpc.aio.Server = self._run(self._create(options))

    async def _create(self, options: list[tuple[str, Any]]) -> grpc.aio.Server:
        return grpc.aio.server(options=options)

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._run(call())

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Register services (what the generated ``add_*Servicer_to_server`` functions call)."""
        self._on_loop(self._server.add_generic_rpc_handlers, handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:
        """Register methods by name (newer generated code calls this too)."""
        self._on_loop(self._server.add_registered_method_handlers, service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """Bind ``address``; returns the port (0 or RuntimeError when it cannot bind)."""
        return self._on_loop(self._server.add_insecure_port, address)

    def start(self) -> None:
        """Start serving."""
        self._run(self._server.start())

    def stop(self, grace: float | None) -> threading.Event:
        """Stop (letting calls finish within ``grace`` seconds), then end the loop thread.

        Returns:
            An already-set event, like the one ``grpc.Server.stop`` returns.
        """
        done = threading.Event()
        if self._thread.is_alive():
            try:
                self._run(self._server.stop(grace))
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=10)
                for executor in self.executors:
                    executor.shutdown(wait=False, cancel_futures=True)
                if not self._thread.is_alive():
                    self.loop.close()
        done.set()
        return done

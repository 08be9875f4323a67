"""Hand results from worker threads to an event loop with one wake-up per burst, not per result."""

# A batch of 32 Predicts finishes at once on a batch thread. asyncio.wrap_future would make
# 32 call_soon_threadsafe calls, each writing the loop's self-pipe and each a GIL round trip
# for a loop that then wakes 32 times; py-spy showed that as ~10% of the GIL time of a
# batching server. Here the first finished result schedules one drain and the rest of the
# burst joins it.

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any


class LoopResults:
    """Await ``concurrent.futures.Future``s from ``loop``, coalescing their completions.

    Args:
        loop: the event loop that awaits the results (it must be running when results arrive).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        # (waiter, result, error) triples waiting for the next drain.
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._drain_scheduled = False

    def expect(self) -> tuple[asyncio.Future[Any], Callable[[Any, BaseException | None], None]]:
        """A waiter on the loop and the function a worker thread calls to complete it.

        The function takes (result, None) or (None, error); it never blocks, and a waiter
        cancelled meanwhile just drops its result. Must be called on the loop.
        """
        waiter: asyncio.Future[Any] = self._loop.create_future()
        return waiter, lambda result, error: self._post(waiter, result, error)

    def watch(self, future: futures.Future[Any]) -> asyncio.Future[Any]:
        """An asyncio future on the loop that takes ``future``'s result or exception.

        Must be called on the loop. Cancelling the returned future does not cancel ``future``
        (a queued batch task runs anyway; its result is dropped).
        """
        waiter, complete = self.expect()

        def forward(done: futures.Future[Any]) -> None:
            if done.cancelled():
                complete(None, asyncio.CancelledError())
            else:
                error = done.exception()
                complete(None if error is not None else done.result(), error)

        future.add_done_callback(forward)
        return waiter

    def _post(self, waiter: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._done.append((waiter, result, error))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            with self._lock:
                self._done.clear()
                self._drain_scheduled = False

    def _drain(self) -> None:
        with self._lock:
            ready, self._done = self._done, []
            self._drain_scheduled = False
        for waiter, result, error in ready:
            if waiter.done():  # cancelled while its batch ran
                continue
            if isinstance(error, asyncio.CancelledError):
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)

"""Hand results from worker threads to an event loop with one wake-up per burst, not per result."""

# A batch of 32 Predicts finishes at once on a batch thread. asyncio.wrap_future would make
# 32 call_soon_threadsafe calls, each writing the loop's self-pipe and each a GIL round trip
# for a loop that then wakes 32 times; py-spy showed that as ~10% of the GIL time of a
# batching server. Here the first finished result schedules one drain and the rest of the
# burst joins it.

from __future__ import annotations

import asyncio
import threading
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
        self._done: list[tuple[asyncio.Future[Any], futures.Future[Any]]] = []
        self._drain_scheduled = False

    def watch(self, future: futures.Future[Any]) -> asyncio.Future[Any]:
        """An asyncio future on the loop that takes ``future``'s result or exception.

        Must be called on the loop. Cancelling the returned future does not cancel ``future``
        (a queued batch task runs anyway; its result is dropped).
        """
        waiter: asyncio.Future[Any] = self._loop.create_future()
        future.add_done_callback(lambda done: self._post(waiter, done))
        return waiter

    def _post(self, waiter: asyncio.Future[Any], done: futures.Future[Any]) -> None:
        with self._lock:
            self._done.append((waiter, done))
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
        for waiter, done in ready:
            if waiter.done():  # cancelled while its batch ran
                continue
            if done.cancelled():
                waiter.cancel()
                continue
            exc = done.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(done.result())

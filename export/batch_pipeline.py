"""Bounded background stages of the local batch backend: a reader ahead of the model, a writer behind it.

Reading, decoding and Parquet encoding are mostly Arrow C++ and TensorFlow work that releases
the GIL, so on their own threads they run while the main thread waits in the model's signature.
Each stage holds at most ``depth`` items (memory stays bounded whatever the input size), and an
exception in a stage's thread is raised in the main thread at its next hand-over, so a failure
anywhere stops the job.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterator[T], *, depth: int, name: str = "batch-reader") -> Generator[T, None, None]:
    """``items`` produced on a thread, at most ``depth`` ahead of the consumer.

    The producer's exception is raised here, in order; closing the iterator early (the consumer
    failed) stops the producer at its next item.
    """
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class BackgroundSink(Generic[T]):
    """Hands items to ``consume`` on a thread through a queue of at most ``depth`` items.

    ``put`` blocks while the queue is full and raises the consumer's exception once it has
    failed; ``close`` waits for every item to be consumed, then runs ``finish`` on the thread
    (a writer's close) and raises what either raised. Use it as a context manager: leaving on
    an exception abandons the queued items without consuming them.
    """

    def __init__(
        self,
        consume: Callable[[T], None],
        *,
        depth: int,
        finish: Callable[[], None] = lambda: None,
        name: str = "batch-writer",
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth must be positive, got {depth}")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._consume = consume
        self._finish = finish
        self._error: BaseException | None = None
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not _DONE:
                if self._abandon.is_set():
                    continue
                self._consume(item)  # type: ignore[arg-type]
        except BaseException as exc:
            self._error = exc
            while self._queue.get() is not _DONE:  # drain so put never blocks forever
                pass
        finally:
            try:
                self._finish()
            except BaseException as exc:
                self._error = self._error or exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Queue ``item`` (blocking while ``depth`` items wait); raises the consumer's error."""
        self._raise_if_failed()
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                self._raise_if_failed()
        self._raise_if_failed()
        raise RuntimeError("the background consumer has stopped")

    def close(self) -> None:
        """Consume everything queued, finish, and raise the first error of the thread."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise_if_failed()

    def abandon(self) -> None:
        """Drop the queued items, finish, and wait for the thread (errors are not raised)."""
        self._abandon.set()
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def __enter__(self) -> BackgroundSink[T]:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

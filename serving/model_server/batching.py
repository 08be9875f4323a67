"""Server-side batching: concurrent runs that feed and fetch the same tensors merged into one run, split back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent import futures

import numpy as np

from serving.model_server.batching_options import BatchingOptions
from serving.model_server.batching_queue import Batch, Deliver, Task, batch_deadline, schedule
from serving.model_server.batching_route import Routes
from serving.model_server.batching_tensors import check_outputs, merge_inputs, task_size
from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable

__all__ = ["Batcher", "BatchingOptions", "Deliver", "deliver_to"]


def deliver_to(future: futures.Future) -> Deliver:
    """A Deliver that completes a concurrent future."""

    def deliver(outputs: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outputs)

    return deliver


class Batcher:
    """TF Serving's batching (BatchingSession over a SharedBatchScheduler) for Servable.run calls.

    One queue per servable and TensorSignature: the sorted input and output tensor names, so
    runs of different signatures or output filters over the same tensors share batches, and
    tasks whose dims 1.. differ meet in one batch, which then fails for all of them unless
    ``pad_variable_length_inputs``. A batch is processed once it is full
    (:attr:`BatchingOptions.execution_batch_size` rows), once ``batch_timeout_micros`` passed
    since it opened, or once a task did not fit; ``num_batch_threads`` threads process
    batches, so while they are busy new requests pile up into bigger batches.

    A task of more than ``max_batch_size`` rows is refused with INVALID_ARGUMENT. With
    ``enable_large_batch_splitting``, a task that does not fit the open batch is cut into
    pieces (the open batch's free rows, then whole batches) and answered whole. A queue
    without room answers UNAVAILABLE. A batch whose every task's deadline passed while queued
    is not run: its tasks get RESOURCE_EXHAUSTED, as TF Serving answers; a batch with one live
    task runs whole, with the latest deadline of its tasks.

    At most ``num_batch_threads`` batches are processed at once. A batch that fills up while a
    slot is free is processed by the thread whose task filled it, not handed to a batch thread:
    that saves a thread wake-up per batch (measured, 32 gRPC clients x 16 rows: 5,310-5,910 ->
    5,460-5,980 req/s, paired runs). The batch threads take the batches closed by their
    timeout or by a task that did not fit.
    """

    def __init__(self, options: BatchingOptions, thread_init: Callable[[], None] | None = None) -> None:
        self.options = options
        self._thread_init = thread_init
        self._routes = Routes()
        self._cond = threading.Condition()
        self._queues: dict[Hashable, list[Batch]] = {}
        self._running = 0  # batches being processed, by batch threads or by the filling thread
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-thread-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Same contract as :meth:`Servable.run`, executed as part of a batch.

        Raises:
            ServingError: as :meth:`enqueue`, or the batch run's error.
        """
        future = self.submit(servable, signature_name, inputs, output_filter, deadline=deadline)
        if future is None:
            return servable.run(signature_name, inputs, output_filter, deadline=deadline)
        return future.result()

    def submit(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> futures.Future | None:
        """Queue a run without waiting; the future holds its outputs or the batch's error.

        Returns:
            None when the request has nothing to batch (see :meth:`enqueue`): the caller runs
            it with ``servable.run`` itself.

        Raises:
            ServingError: as :meth:`enqueue`.
        """
        future: futures.Future = futures.Future()
        if not self.enqueue(
            servable, signature_name, inputs, output_filter, deliver_to(future), deadline=deadline
        ):
            return None
        return future

    def enqueue(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        deliver: Deliver,
        *,
        deadline: float | None = None,
    ) -> bool:
        """Queue a run whose outcome a batch thread hands to ``deliver``.

        This is the cheapest way in (no future per task), for the gRPC event loop, where every
        microsecond per request is throughput.

        Args:
            deadline: the caller's ``time.monotonic()`` deadline. If it and the deadline of
                every other task in the batch passed before the batch runs, the batch is not
                run (TF Serving's RunOptions timeout, batching_session.cc ProcessBatch).

        Returns:
            False when there is nothing to batch (no inputs, or zero rows): the caller runs it
            with ``servable.run`` itself. ``deliver`` is then never called.

        Raises:
            ServingError: the request's own errors (checked before queueing), INVALID_ARGUMENT
                for more than ``max_batch_size`` rows, UNAVAILABLE when the queue is full or
                the batcher stopped; ``deliver`` is then never called.
        """
        prepared = servable.prepare(signature_name, inputs, output_filter)
        feeds = prepared[1]
        if not feeds:
            return False
        route = self._routes.get(servable, signature_name, tuple(output_filter), prepared)
        arrays = [feeds[alias][1] for alias in route.feed_order]
        size = task_size(arrays)
        if size == 0:
            return False
        if size > self.options.max_batch_size:
            raise ServingError.invalid_argument(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        self._enqueue(servable, route.queue_key, Task(arrays, size, deliver, route, deadline))
        return True

    def _enqueue(self, servable: Servable, queue_key: Hashable, task: Task) -> None:
        fills: Batch | None = None
        with self._cond:
            if self._stopped:
                raise ServingError.unavailable("Batch scheduler is stopped")
            batches = self._queues.get(queue_key)
            if batches is None:
                batches = self._queues[queue_key] = []
            try:
                wake, filled = schedule(batches, servable, task, self.options)
            finally:
                if not batches:  # refused into a new queue
                    del self._queues[queue_key]
            if filled is not None and batches[0] is filled and self._running < self.options.num_batch_threads:
                batches.pop(0)  # this thread processes it (FIFO: nothing older waits)
                if not batches:
                    del self._queues[queue_key]
                self._running += 1
                fills = filled
                wake = bool(self._queues)
            if wake:
                self._cond.notify()
        if fills is not None:
            self._process_counted(fills)

    def _process_counted(self, batch: Batch) -> None:
        """Process a batch taken with ``_running`` raised; then free its slot."""
        try:
            self._process(batch)
        finally:
            with self._cond:
                self._running -= 1
                if self._queues:
                    self._cond.notify()  # a batch may be waiting for the slot

    def _next_batch(self) -> Batch | None:
        """Wait for a batch that is ready; None once stopped. Called with the condition held."""
        timeout = self.options.batch_timeout_micros / 1e6
        while not self._stopped:
            if self._running >= self.options.num_batch_threads:
                self._cond.wait()  # every slot is busy (a filling thread took one)
                continue
            now = time.monotonic()
            wait: float | None = None
            for queue_key, batches in self._queues.items():
                if not batches:
                    continue
                first = batches[0]
                due = first.opened + timeout
                if first.closed or now >= due:
                    batches.pop(0)
                    first.closed = True
                    if not batches:
                        del self._queues[queue_key]
                    if self._queues:
                        # Enqueue only wakes a thread when a batch opens or closes: let an
                        # idle one take over watching the batches left behind.
                        self._cond.notify()
                    self._running += 1
                    return first
                wait = due - now if wait is None else min(wait, due - now)
            self._cond.wait(wait)
        return None

    def _work(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._process_counted(batch)

    def _process(self, batch: Batch) -> None:
        tasks = batch.tasks
        route = batch.route
        try:
            deadline = batch_deadline(tasks)
            merged, padded_size = merge_inputs(
                [[task.inputs[i] for task in tasks] for i in range(len(route.input_names))],
                route.input_names,
                batch.size,
                self.options.allowed_batch_sizes,
                self.options.pad_variable_length_inputs,
            )
            outputs = batch.servable.run(
                route.signature,
                {alias: merged[i] for alias, i in route.feeds},
                route.output_filter,
                deadline=deadline,
            )
            columns = [outputs[alias] for alias in route.fetch_order]
            check_outputs(columns, padded_size)
        except BaseException as exc:  # every waiting caller must wake up with the error
            for task in tasks:
                task.deliver(None, exc)
            return
        start = 0
        for task in tasks:
            end = start + task.size
            task.deliver({alias: columns[i][start:end] for alias, i in task.route.outputs}, None)
            start = end

    def stop(self) -> None:
        """Stop the batch threads; queued tasks fail with UNAVAILABLE."""
        with self._cond:
            self._stopped = True
            pending = [t for batches in self._queues.values() for b in batches for t in b.tasks]
            self._queues.clear()
            self._cond.notify_all()
        for task in pending:
            task.deliver(None, ServingError.unavailable("Batch scheduler is stopped"))
        for thread in self._threads:
            thread.join(timeout=10)

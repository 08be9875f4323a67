"""One batching queue's batches, and where a new task's rows go (SharedBatchScheduler's Queue::Schedule)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from serving.model_server.batching_options import BatchingOptions
from serving.model_server.batching_route import Route
from serving.model_server.batching_split import Joiner, piece_sizes
from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable

# How a task's outcome reaches its caller: (outputs, None) or (None, error). Called on a batch
# thread; it must not block.
Deliver = Callable[[dict[str, np.ndarray] | None, BaseException | None], None]

_QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


@dataclass(slots=True)
class Task:
    """One run, or one piece of a split run, waiting in a batch."""

    inputs: list[np.ndarray]  # in the route's sorted input tensor name order
    size: int
    deliver: Deliver
    route: Route
    deadline: float | None  # time.monotonic(); None: none


@dataclass(slots=True)
class Batch:
    """Tasks run together; closed once full or once a task did not fit."""

    servable: Servable
    route: Route  # the route of the task that opened it: the batch runs its signature
    opened: float
    tasks: list[Task] = field(default_factory=list)
    size: int = 0
    closed: bool = False


def schedule(
    batches: list[Batch], servable: Servable, task: Task, options: BatchingOptions
) -> tuple[bool, Batch | None]:
    """Add ``task`` to a queue's ``batches`` (oldest first; only the last may be open).

    Rows go into the open batch while they fit; a batch closes when full (at
    ``options.execution_batch_size`` rows) or when the next task does not fit. With
    ``enable_large_batch_splitting`` a task that does not fit the open batch is cut to fill it
    and then whole batches. The queue's room is checked first, so a refused task changes
    nothing.

    Returns:
        Whether a batch opened or closed (batch threads then need waking), and the first batch
        this task filled, if any.

    Raises:
        ServingError: UNAVAILABLE with TF's text when the queue has no room for the task.
    """
    limit = options.execution_batch_size
    tail = batches[-1].size if batches else 0  # a closed last batch is a full one
    if options.enable_large_batch_splitting:
        pieces = _split_if_needed(batches, tail, task, limit, options.max_enqueued_batches)
    else:
        # TF's "loose" check: only a task that needs a new batch meets the limit.
        if tail and tail + task.size > limit and len(batches) >= options.max_enqueued_batches:
            raise ServingError.unavailable(
                f"{_QUEUE_FULL}; currently {len(batches)} batches enqueued and "
                f"max_enqueued_batches is {options.max_enqueued_batches}"
            )
        pieces = [task]
    changed = False
    filled: Batch | None = None
    for piece in pieces:
        current = batches[-1] if batches and not batches[-1].closed else None
        if current is not None and current.size + piece.size > limit:
            current.closed = True
            current = None
        if current is None:
            current = Batch(servable, task.route, time.monotonic())
            batches.append(current)
            changed = True
        current.tasks.append(piece)
        current.size += piece.size
        if current.size >= limit:
            current.closed = True
            changed = True
            filled = filled or current
    return changed, filled


def _split_if_needed(batches: list[Batch], tail: int, task: Task, limit: int, most: int) -> list[Task]:
    """Check the queue has room for every row (TF's capacity rule), then cut the task if needed."""
    enqueued = len(batches) or 1  # TF counts its open batch even when it is empty
    capacity = (most - enqueued) * limit + (limit - tail)
    if task.size > capacity:
        raise ServingError.unavailable(
            f"{_QUEUE_FULL}; task size is {task.size} but scheduling capacity is only {capacity} "
            f"(num_enqueued_batches={enqueued}, max_enqueued_batches={most}, "
            f"open_batch_size={tail}, max_execution_batch_size={limit})"
        )
    if task.size <= limit - tail:
        return [task]
    sizes = piece_sizes(task.size, limit - tail, limit)
    joiner = Joiner(task.deliver, len(sizes))
    pieces, start = [], 0
    for index, size in enumerate(sizes):
        rows = slice(start, start + size)
        pieces.append(
            Task([a[rows] for a in task.inputs], size, joiner.piece(index), task.route, task.deadline)
        )
        start += size
    return pieces


def batch_deadline(tasks: list[Task]) -> float | None:
    """The batch run's deadline: its tasks' latest, None if one has none (ProcessBatch's timeout).

    Raises:
        ServingError: RESOURCE_EXHAUSTED with TF's text when every task's deadline passed while
            it waited: the batch is not run.
    """
    latest = 0.0
    for task in tasks:
        if task.deadline is None:
            return None
        if task.deadline > latest:
            latest = task.deadline
    if latest <= time.monotonic():
        raise ServingError.resource_exhausted("Run() timeout exceeded while waiting in batching queue")
    return latest

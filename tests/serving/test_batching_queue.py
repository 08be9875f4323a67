"""Where a task's rows go: shared_batch_scheduler.h's capacity rules and input_split_metadata.cc's cuts."""

from __future__ import annotations

import time
import weakref
from typing import Any

import grpc
import numpy as np
import pytest

from serving.model_server.batching_options import BatchingOptions
from serving.model_server.batching_queue import Batch, Task, batch_deadline, schedule
from serving.model_server.batching_route import Route
from serving.model_server.batching_split import Joiner, piece_sizes
from serving.model_server.errors import ServingError


class _Owner:
    """Stands in for the servable: schedule() only stores it."""


_OWNER = _Owner()
_ROUTE = Route(
    weakref.ref(_OWNER), "q", "serving_default", (), ("x:0",), ("x",), (("x", 0),), ("y",), (("y", 0),)
)
_SPLIT = BatchingOptions(
    max_batch_size=10, max_enqueued_batches=2, enable_large_batch_splitting=True, max_execution_batch_size=4
)


def _task(rows: int, deliver: Any = None, deadline: float | None = None) -> Task:
    x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
    return Task([x], rows, deliver or (lambda outputs, error: None), _ROUTE, deadline)


def _add(batches: list[Batch], rows: int, options: BatchingOptions) -> tuple[bool, Batch | None]:
    return schedule(batches, _OWNER, _task(rows), options)  # type: ignore[arg-type]


def _layout(batches: list[Batch]) -> list[tuple[list[int], bool]]:
    return [([t.size for t in b.tasks], b.closed) for b in batches]


@pytest.mark.parametrize(
    ("size", "remaining", "limit", "expected"),
    [
        (10, 3, 4, [3, 4, 3]),
        (8, 0, 4, [4, 4]),  # a full open batch: whole batches from the start
        (5, 1, 3, [1, 3, 1]),
        (2, 3, 4, [2]),
        (9, 4, 4, [4, 4, 1]),
    ],
)
def test_piece_sizes(size: int, remaining: int, limit: int, expected: list[int]) -> None:
    assert piece_sizes(size, remaining, limit) == expected


def test_without_splitting_a_task_that_does_not_fit_closes_the_open_batch() -> None:
    options = BatchingOptions(max_batch_size=4, max_enqueued_batches=2)
    batches: list[Batch] = []
    assert _add(batches, 2, options) == (True, None)  # opened: batch threads need waking
    assert _add(batches, 1, options) == (False, None)  # joined the open batch: they do not
    changed, filled = _add(batches, 3, options)
    assert changed and filled is None and _layout(batches) == [([2, 1], True), ([3], False)]
    changed, filled = _add(batches, 1, options)
    assert changed and filled is batches[1] and _layout(batches) == [([2, 1], True), ([3, 1], True)]


def test_without_splitting_only_a_task_needing_a_new_batch_meets_the_limit() -> None:
    options = BatchingOptions(max_batch_size=4, max_enqueued_batches=1)
    batches: list[Batch] = []
    _add(batches, 3, options)
    _add(batches, 1, options)  # fits the open batch: no check
    with pytest.raises(
        ServingError,
        match="^The batch scheduling queue to which this task was submitted is full; currently 1 batches "
        "enqueued and max_enqueued_batches is 1$",
    ) as info:
        _add(batches, 1, options)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert _layout(batches) == [([3, 1], True)]


def test_splitting_cuts_a_task_to_fill_the_open_batch_then_whole_batches() -> None:
    batches: list[Batch] = []
    _add(batches, 3, _SPLIT)
    changed, filled = _add(batches, 5, _SPLIT)  # 1 completes the open batch, then 4
    assert changed and filled is batches[0]
    assert _layout(batches) == [([3, 1], True), ([4], True)]
    # The pieces are consecutive rows of the task.
    assert [t.inputs[0][:, 0].tolist() for t in batches[0].tasks[1:] + batches[1].tasks] == [
        [0.0],
        [1.0, 2.0, 3.0, 4.0],
    ]


def test_splitting_refuses_a_task_beyond_the_queues_capacity() -> None:
    batches: list[Batch] = []
    # Empty queue: (2 - 1) * 4 + (4 - 0) = 8 rows of room (TF counts its empty open batch).
    with pytest.raises(
        ServingError,
        match=r"^The batch scheduling queue to which this task was submitted is full; task size is 9 but "
        r"scheduling capacity is only 8 \(num_enqueued_batches=1, max_enqueued_batches=2, "
        r"open_batch_size=0, max_execution_batch_size=4\)$",
    ):
        _add(batches, 9, _SPLIT)
    _add(batches, 3, _SPLIT)
    with pytest.raises(
        ServingError, match=r"task size is 6 but scheduling capacity is only 5 .*open_batch_size=3"
    ):
        _add(batches, 6, _SPLIT)
    assert _layout(batches) == [([3], False)]  # a refused task changes nothing


def test_a_joiner_answers_once_in_piece_order_or_with_the_first_error() -> None:
    answers: list[tuple[Any, Any]] = []
    joiner = Joiner(lambda outputs, error: answers.append((outputs, error)), 3)
    joiner.piece(2)({"y": np.array([5.0])}, None)
    joiner.piece(0)({"y": np.array([1.0, 2.0])}, None)
    assert answers == []
    joiner.piece(1)({"y": np.array([3.0, 4.0])}, None)
    assert len(answers) == 1 and answers[0][0]["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]

    failed: list[tuple[Any, Any]] = []
    first, second = ServingError.internal("first"), ServingError.internal("second")
    joiner = Joiner(lambda outputs, error: failed.append((outputs, error)), 3)
    joiner.piece(1)(None, first)
    joiner.piece(0)({"y": np.array([1.0])}, None)
    joiner.piece(2)(None, second)
    assert failed == [(None, first)]


def test_a_batch_runs_until_its_latest_deadline_and_expires_only_when_every_task_did() -> None:
    # batching_session.cc ProcessBatch.
    later = time.monotonic() + 60
    assert batch_deadline([_task(1, deadline=0.0), _task(1, deadline=later)]) == later
    assert batch_deadline([_task(1, deadline=later), _task(1, deadline=None)]) is None
    with pytest.raises(
        ServingError, match=r"^Run\(\) timeout exceeded while waiting in batching queue$"
    ) as info:
        batch_deadline([_task(1, deadline=0.0), _task(1, deadline=1.0)])
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED

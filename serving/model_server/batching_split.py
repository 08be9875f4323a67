"""Large batch splitting: a task cut along dim 0 into batches, answered whole once every piece is done."""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

import numpy as np

from serving.model_server.errors import ServingError

if TYPE_CHECKING:
    from serving.model_server.batching_queue import Deliver


def piece_sizes(size: int, open_batch_remaining_slot: int, limit: int) -> list[int]:
    """How TF cuts a task (InputSplitMetadata): fill the open batch, then whole batches of ``limit``.

    When the open batch is full (no slot left) the first piece is a whole batch too. For
    example 10 rows, 3 slots left, limit 4: [3, 4, 3].
    """
    first = min(size, open_batch_remaining_slot if open_batch_remaining_slot > 0 else limit)
    sizes = [first]
    left = size - first
    while left > 0:
        sizes.append(min(left, limit))
        left -= sizes[-1]
    return sizes


class Joiner:
    """Answers a split task once, when its last piece is done.

    The outputs are each piece's outputs concatenated in piece order; the first error any piece
    met wins, as in TF Serving's split_task_done_callback over a ThreadSafeStatus. Pieces may be
    done on different batch threads at once.
    """

    __slots__ = ("_deliver", "_error", "_lock", "_parts", "_pending")

    def __init__(self, deliver: Deliver, count: int) -> None:
        self._deliver = deliver
        self._parts: list[dict[str, np.ndarray] | None] = [None] * count
        self._pending = count
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def piece(self, index: int) -> Deliver:
        """The Deliver of piece ``index``."""
        return functools.partial(self._done, index)

    def _done(self, index: int, outputs: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
        with self._lock:
            if error is not None:
                self._error = self._error or error
            else:
                self._parts[index] = outputs
            self._pending -= 1
            if self._pending:
                return
        if self._error is not None:
            self._deliver(None, self._error)
            return
        parts = [part for part in self._parts if part is not None]
        try:
            joined = {alias: np.concatenate([p[alias] for p in parts], axis=0) for alias in parts[0]}
        except ValueError as exc:  # pieces padded to different widths came back with different shapes
            self._deliver(None, ServingError.internal(f"Tensor concat operation failed: {exc}"))
            return
        self._deliver(joined, None)

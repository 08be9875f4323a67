"""BatchingParameters as TF Serving's model server reads them: its defaults and its load-time checks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


def max_parallelism() -> int:
    """TF's ``port::MaxParallelism()``: the CPUs this process may be scheduled on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every CPU
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingOptions:
    """The BatchingParameters a batcher runs with.

    Unset fields keep TF Serving's defaults: ``SharedBatchScheduler::QueueOptions``
    (input_batch_size_limit 1000, batch_timeout_micros 0, max_enqueued_batches 10) and
    ``Options`` (num_batch_threads = ``port::MaxParallelism()``), which ``GetQueueOptions`` and
    ``CreateBatchScheduler`` (servables/tensorflow/bundle_factory_util.h) leave in place.

    ``max_batch_size`` bounds a task (``input_batch_size_limit``); batches are formed up to
    :attr:`execution_batch_size`. ``max_execution_batch_size`` only counts with
    ``enable_large_batch_splitting``; None then means ``max_batch_size``, as GetQueueOptions
    reads an unset field.

    Raises:
        ValueError: at construction, with TF Serving's text, for the parameters its model server
            refuses at load time (bundle_factory_util.cc, shared_batch_scheduler.h).
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = field(default_factory=max_parallelism)
    max_enqueued_batches: int = 10
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        # In the order the model server meets them: CreateBatchScheduler, WrapSessionForBatching,
        # then SharedBatchScheduler::AddQueue.
        if self.num_batch_threads < 1:
            raise ValueError(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if self.allowed_batch_sizes and self.allowed_batch_sizes[-1] != self.max_batch_size:
            # The model server's rule, with or without splitting (WrapSessionForBatching); the
            # stricter checks of CreateBasicBatchingSession are not on its path.
            raise ValueError(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{self.allowed_batch_sizes[-1]}; expected {self.max_batch_size}"
            )
        if self.max_batch_size <= 0:
            raise ValueError(f"input_batch_size_limit must be positive; was {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}")
        if self.max_enqueued_batches <= 0:
            if not self.enable_large_batch_splitting:
                # AddQueue rewrites 0 to 1 "to retain old behavior" for low-QPS models.
                object.__setattr__(self, "max_enqueued_batches", 1)
            else:
                raise ValueError(f"max_enqueued_batches must be positive; was {self.max_enqueued_batches}")
        if self.enable_large_batch_splitting:
            limit = self.execution_batch_size
            if limit <= 0:
                # TF does not check this; its scheduler would divide by zero on the first task.
                raise ValueError(f"max_execution_batch_size must be positive; was {limit}")
            if self.max_batch_size < limit:
                # StrCat appends the flag (a bool, printed as 1) and both sizes without separators.
                raise ValueError(
                    "When enable_large_batch_splitting is true, input_batch_size_limit must be "
                    f"greater than or equal to max_execution_batch_size.1{self.max_batch_size}{limit}"
                )

    @property
    def execution_batch_size(self) -> int:
        """The largest batch formed (``Queue::GetMaxExecutionBatchSize``)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    @classmethod
    def from_proto(cls, params: Any) -> BatchingOptions:
        """From a ``tensorflow.serving.BatchingParameters`` message, read as GetQueueOptions reads it."""
        values: dict[str, Any] = {}
        for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
            if params.HasField(name):
                values[name] = int(getattr(params, name).value)
        values["allowed_batch_sizes"] = tuple(int(v) for v in params.allowed_batch_sizes)
        values["pad_variable_length_inputs"] = bool(params.pad_variable_length_inputs)
        if params.HasField("enable_large_batch_splitting") and params.enable_large_batch_splitting.value:
            values["enable_large_batch_splitting"] = True
            # Unset: max_batch_size().value(), which is 0 when that is unset too.
            source = (
                "max_execution_batch_size"
                if params.HasField("max_execution_batch_size")
                else "max_batch_size"
            )
            values["max_execution_batch_size"] = int(getattr(params, source).value)
        return cls(**values)

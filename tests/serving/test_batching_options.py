"""BatchingOptions: TF Serving's defaults, how BatchingParameters are read, and its load-time refusals."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from serving.model_server.batching_options import BatchingOptions, max_parallelism
from serving.model_server.protos import server_configs_pb2


def _params(text: str) -> BatchingOptions:
    return BatchingOptions.from_proto(text_format.Parse(text, server_configs_pb2.BatchingParameters()))


def test_unset_fields_keep_tf_serving_defaults() -> None:
    # shared_batch_scheduler.h: QueueOptions input_batch_size_limit 1000, batch_timeout_micros 0,
    # max_enqueued_batches 10; Options num_batch_threads = port::MaxParallelism().
    options = _params("")
    assert options == BatchingOptions()
    assert (options.max_batch_size, options.batch_timeout_micros, options.max_enqueued_batches) == (
        1000,
        0,
        10,
    )
    assert options.num_batch_threads == max_parallelism() >= 1
    assert not options.enable_large_batch_splitting and not options.pad_variable_length_inputs
    assert options.execution_batch_size == 1000


def test_max_execution_batch_size_counts_only_with_splitting() -> None:
    # bundle_factory_util.h GetQueueOptions reads fields 8 and 9 only when splitting is on.
    assert (
        _params("max_batch_size { value: 8 } max_execution_batch_size { value: 4 }").execution_batch_size == 8
    )
    split = _params(
        "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 4 }"
    )
    assert (
        split.enable_large_batch_splitting,
        split.max_execution_batch_size,
        split.execution_batch_size,
    ) == (
        True,
        4,
        4,
    )
    # Unset max_execution_batch_size: max_batch_size's value.
    assert (
        _params(
            "max_batch_size { value: 8 } enable_large_batch_splitting { value: true }"
        ).execution_batch_size
        == 8
    )


def test_allowed_batch_sizes_must_end_at_max_batch_size_even_when_splitting() -> None:
    # bundle_factory_util.cc WrapSessionForBatching checks this for every configuration.
    with pytest.raises(
        ValueError,
        match="^Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8$",
    ):
        BatchingOptions(
            max_batch_size=8,
            allowed_batch_sizes=(2, 4),
            enable_large_batch_splitting=True,
            max_execution_batch_size=4,
        )
    # Unset max_batch_size: the scheduler's default, 1000.
    with pytest.raises(ValueError, match="last entry was 8; expected 1000$"):
        _params("allowed_batch_sizes: 4 allowed_batch_sizes: 8")
    ok = BatchingOptions(
        max_batch_size=8,
        allowed_batch_sizes=(2, 8),
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
    )
    assert ok.allowed_batch_sizes == (2, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # shared_batch_scheduler.h Create and AddQueueAfterRewritingOptions.
        ({"num_batch_threads": 0}, "^num_batch_threads must be positive; was 0$"),
        ({"max_batch_size": 0}, "^input_batch_size_limit must be positive; was 0$"),
        ({"batch_timeout_micros": -1}, "^batch_timeout_micros must be non-negative; was -1$"),
        (
            {"max_enqueued_batches": 0, "enable_large_batch_splitting": True},
            "^max_enqueued_batches must be positive; was 0$",
        ),
        (
            {"max_batch_size": 4, "enable_large_batch_splitting": True, "max_execution_batch_size": 8},
            "^When enable_large_batch_splitting is true, input_batch_size_limit must be greater than "
            "or equal to max_execution_batch_size.148$",
        ),
        # Not a TF check: its scheduler would divide by zero on the first task.
        (
            {"enable_large_batch_splitting": True, "max_execution_batch_size": 0},
            "^max_execution_batch_size must be positive; was 0$",
        ),
    ],
)
def test_refused_like_the_model_server_refuses_them(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchingOptions(**kwargs)


def test_zero_max_enqueued_batches_means_one_without_splitting() -> None:
    # AddQueue rewrites 0 to 1 for models that relied on it.
    assert BatchingOptions(max_enqueued_batches=0).max_enqueued_batches == 1


def test_splitting_with_neither_size_set_is_refused() -> None:
    # GetQueueOptions reads max_batch_size().value() of an unset field: 0.
    with pytest.raises(ValueError, match="^max_execution_batch_size must be positive; was 0$"):
        _params("enable_large_batch_splitting { value: true }")

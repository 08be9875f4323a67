"""Batcher: runs merged into one run and split back exactly, keyed, refused and expired as TF Serving does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from serving.model_server.batching import Batcher, BatchingOptions  # noqa: E402
from serving.model_server.config import read_batching_parameters  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402

MakeBatcher = Callable[..., Batcher]
LONG = 30_000_000  # a batch_timeout_micros no test waits for: batches close because they are full


class RecordingServable(Servable):
    """The real servable, recording the batch size of every run (and optionally holding it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batch_sizes: list[int] = []
        self.threads: list[str] = []
        self.deadlines: list[float | None] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def run(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        self.batch_sizes.append(next(iter(inputs.values())).shape[0])
        self.threads.append(threading.current_thread().name)
        self.deadlines.append(deadline)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        return super().run(signature_name, inputs, output_filter, deadline=deadline)

    def reset(self, gated: bool = False) -> None:
        """Forget recorded runs; with ``gated``, hold every run until ``gate`` is set."""
        self.batch_sizes.clear()
        self.threads.clear()
        self.deadlines.clear()
        self.entered.clear()
        if self.gate is not None:
            self.gate.set()
        self.gate = threading.Event() if gated else None


@pytest.fixture(scope="module")
def matrix(tfserving_testdata: Path) -> RecordingServable:
    return RecordingServable("matrix", 1, tfserving_testdata / "matrix_half_plus_two" / "1")


@pytest.fixture(scope="module")
def half_plus_two(tfserving_testdata: Path) -> RecordingServable:
    return RecordingServable("hp2", 123, tfserving_testdata / "saved_model_half_plus_two_cpu" / "00000123")


@pytest.fixture
def make_batcher(matrix: RecordingServable, half_plus_two: RecordingServable) -> Iterator[MakeBatcher]:
    """Batchers from BatchingOptions keywords (one batch thread unless told), on fresh servables;
    afterwards every gate opens and every batcher stops."""
    made: list[Batcher] = []
    servables = (matrix, half_plus_two)
    for servable in servables:
        servable.reset()

    def make(**options: Any) -> Batcher:
        options.setdefault("num_batch_threads", 1)
        made.append(Batcher(BatchingOptions(**options)))
        return made[-1]

    yield make
    for servable in servables:
        servable.reset()
    for batcher in made:
        batcher.stop()


def _concurrently(
    batcher: Batcher, servable: Servable, inputs: list[dict[str, np.ndarray]], signatures: Sequence[str] = ()
) -> list:
    names = list(signatures) or [""] * len(inputs)
    with ThreadPoolExecutor(len(inputs)) as pool:
        futures = [
            pool.submit(batcher.run, servable, name, item) for name, item in zip(names, inputs, strict=True)
        ]
        return [f.result(timeout=60) for f in futures]


def _x(*rows: float) -> dict[str, np.ndarray]:
    """half_plus_two's input: one value per row."""
    return {"x": np.array([[v] for v in rows], np.float32)}


def test_concurrent_requests_are_merged_and_split_exactly(
    make_batcher: MakeBatcher, matrix: RecordingServable
) -> None:
    batcher = make_batcher(max_batch_size=6, batch_timeout_micros=LONG)
    rng = np.random.default_rng(0)
    inputs = [{"x": rng.normal(size=(n, 3, 3)).astype(np.float32)} for n in (1, 2, 3)]
    results = _concurrently(batcher, matrix, inputs)
    # The batch closes when full (6 rows), long before the 30 s timeout: one run.
    assert matrix.batch_sizes == [6]
    for item, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result["y"], 0.5 * item["x"] + 2)


def test_allowed_batch_sizes_pad_then_slice(make_batcher: MakeBatcher, matrix: RecordingServable) -> None:
    batcher = make_batcher(max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    x = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    result = batcher.run(matrix, "serving_default", {"x": x})
    assert matrix.batch_sizes == [4]  # 3 rows padded up to the next allowed size
    np.testing.assert_array_equal(result["y"], 0.5 * x + 2)


def test_pad_variable_length_inputs(make_batcher: MakeBatcher, half_plus_two: RecordingServable) -> None:
    batcher = make_batcher(max_batch_size=2, batch_timeout_micros=LONG, pad_variable_length_inputs=True)
    short = {"x": np.array([[1.0]], np.float32)}
    long = {"x": np.array([[4.0, 6.0]], np.float32)}
    got_short, got_long = _concurrently(batcher, half_plus_two, [short, long])
    assert half_plus_two.batch_sizes == [2]
    # The short row was padded with its own first element, as TF Serving pads.
    np.testing.assert_array_equal(got_short["y"], [[2.5, 2.5]])
    np.testing.assert_array_equal(got_long["y"], [[4.0, 5.0]])


def test_full_queue_answers_unavailable(make_batcher: MakeBatcher, half_plus_two: RecordingServable) -> None:
    """shared_batch_scheduler.h ValidateBatchTaskQueueCapacity: UNAVAILABLE, with the counts."""
    batcher = make_batcher(max_batch_size=1, max_enqueued_batches=1)
    half_plus_two.reset(gated=True)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.run, half_plus_two, "", _x(1.0))
        assert half_plus_two.entered.wait(30)  # the only batch slot is now busy
        second = pool.submit(batcher.run, half_plus_two, "", _x(1.0))  # fills the one queue slot
        for _ in range(600):
            with batcher._cond:
                if any(batcher._queues.values()):
                    break
            time.sleep(0.05)
        with pytest.raises(
            ServingError,
            match="^The batch scheduling queue to which this task was submitted is full; currently 1 "
            "batches enqueued and max_enqueued_batches is 1$",
        ) as info:
            batcher.run(half_plus_two, "", _x(1.0))
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        half_plus_two.gate.set()  # type: ignore[union-attr]
        assert first.result(30)["y"].tolist() == second.result(30)["y"].tolist() == [[2.5]]


def test_bad_requests_fail_alone(make_batcher: MakeBatcher, half_plus_two: RecordingServable) -> None:
    batcher = make_batcher(max_batch_size=4)
    with pytest.raises(ServingError, match="input tensors must have at least one dimension"):
        batcher.run(half_plus_two, "", {"x": np.array(1.0, np.float32)})
    with pytest.raises(ServingError, match=r"Expects arg\[0\] to be float but double is provided"):
        batcher.run(half_plus_two, "", {"x": np.array([1.0])})
    with pytest.raises(ServingError, match='Serving signature key "nope" not found.'):
        batcher.run(half_plus_two, "nope", _x(1.0))
    # Larger than max_batch_size, without splitting: refused (shared_batch_scheduler.h).
    with pytest.raises(
        ServingError, match="^Task size 10 is larger than maximum input batch size 4$"
    ) as info:
        batcher.run(half_plus_two, "", {"x": np.arange(10, dtype=np.float32)})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert half_plus_two.batch_sizes == []


def test_options_from_tf_serving_batching_file(tfserving_testdata: Path) -> None:
    options = BatchingOptions.from_proto(read_batching_parameters(tfserving_testdata / "batching_config.txt"))
    assert options == BatchingOptions(
        max_batch_size=128, batch_timeout_micros=0, num_batch_threads=8, max_enqueued_batches=1_000_000
    )
    # bundle_factory_util.cc WrapSessionForBatching.
    with pytest.raises(
        ValueError,
        match="^Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8$",
    ):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4))


def test_submit_leaves_only_empty_requests_to_the_caller(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    batcher = make_batcher(max_batch_size=2)
    with pytest.raises(ServingError, match="^Task size 3 is larger than maximum input batch size 2$"):
        batcher.submit(half_plus_two, "", {"x": np.zeros((3, 1), np.float32)})
    assert batcher.submit(half_plus_two, "", {"x": np.zeros((0, 1), np.float32)}) is None
    future = batcher.submit(half_plus_two, "", _x(2.0))
    assert future is not None
    np.testing.assert_allclose(future.result(timeout=30)["y"], [[3.0]])  # 0.5 * 2 + 2


def test_a_batch_is_processed_by_the_thread_that_fills_it_while_a_slot_is_free(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    """A full batch runs in the thread whose task filled it (no hand-off to a batch thread),
    but never beyond num_batch_threads batches at once: a second full batch waits for the
    slot and goes to a batch thread."""
    batcher = make_batcher(max_batch_size=1, batch_timeout_micros=LONG)
    half_plus_two.reset(gated=True)
    results: dict[str, np.ndarray] = {}

    def call(name: str, x: float) -> None:
        results[name] = batcher.run(half_plus_two, "", _x(x))["y"]

    first = threading.Thread(target=call, args=("first", 1.0), name="caller-first")
    first.start()
    assert half_plus_two.entered.wait(30)
    second = threading.Thread(target=call, args=("second", 3.0), name="caller-second")
    second.start()
    time.sleep(0.3)
    assert half_plus_two.threads == ["caller-first"]  # the second waits for the only slot
    half_plus_two.gate.set()  # type: ignore[union-attr]
    first.join(30)
    second.join(30)
    assert half_plus_two.threads[0] == "caller-first"
    assert half_plus_two.threads[1].startswith("batch-thread")
    assert results["first"].tolist() == [[2.5]] and results["second"].tolist() == [[3.5]]


# ----------------------------------------------------------------- queue keys (batching_session.cc)
def _example(x: float) -> bytes:
    import tensorflow as tf

    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_signatures_over_the_same_tensors_share_a_batch(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    """TF keys queues by TensorSignature (tensor names), not signature: regress_x_to_y and
    classify_x_to_y both feed tf_example:0 and fetch y:0, so they meet in one batch and each
    reads back its own alias."""
    batcher = make_batcher(max_batch_size=2, batch_timeout_micros=LONG)
    inputs = [{"inputs": np.array([_example(x)], object)} for x in (1.0, 3.0)]
    regress, classify = _concurrently(batcher, half_plus_two, inputs, ["regress_x_to_y", "classify_x_to_y"])
    assert half_plus_two.batch_sizes == [2]  # one run, closed when full long before 30 s
    assert list(regress) == ["outputs"] and list(classify) == ["scores"]
    np.testing.assert_array_equal(regress["outputs"], [[2.5]])  # 0.5 * 1 + 2
    np.testing.assert_array_equal(classify["scores"], [[3.5]])  # 0.5 * 3 + 2


def test_unequal_trailing_dims_fail_the_whole_batch_without_padding(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    """Trailing shapes are not part of the key: both tasks join one batch, whose merge fails
    for both with MergeInputTensors' FAILED_PRECONDITION (batching_session.cc)."""
    batcher = make_batcher(max_batch_size=2, batch_timeout_micros=LONG)
    futures = [batcher.submit(half_plus_two, "", {"x": np.zeros((1, width), np.float32)}) for width in (1, 2)]
    for future in futures:
        assert future is not None
        with pytest.raises(
            ServingError,
            match="^Tensors with name 'x:0' from different tasks have different shapes and padding is "
            "turned off. Set pad_variable_length_inputs to true, or ensure that all tensors with "
            "the same name have equal dimensions starting with the first dim.$",
        ) as info:
            future.result(30)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert half_plus_two.batch_sizes == []  # nothing ran


# ---------------------------------------------------------- deadlines (batching_session.cc ProcessBatch)
def _behind_a_busy_slot(
    batcher: Batcher, servable: RecordingServable, deadlines: list[float | None]
) -> list[Future]:
    """Hold the only batch slot with a gated run, queue one task per deadline, let the
    deadlines that are near pass, then open the gate; returns the queued tasks' futures.

    The gated run's batch is not full, so a batch thread takes it (the caller would block in
    the gate if it filled the batch and processed it itself).
    """
    servable.reset(gated=True)
    busy = batcher.submit(servable, "", _x(0.0))
    assert busy is not None and servable.entered.wait(30)
    queued = [batcher.submit(servable, "", _x(float(i + 1)), deadline=d) for i, d in enumerate(deadlines)]
    time.sleep(0.1)  # the near deadlines pass while the batch waits for the slot
    servable.gate.set()  # type: ignore[union-attr]
    assert busy.result(30)["y"].tolist() == [[2.0]]
    return [f for f in queued if f is not None]


def test_a_batch_whose_every_task_expired_is_not_run(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    batcher = make_batcher(max_batch_size=2)
    (expired,) = _behind_a_busy_slot(batcher, half_plus_two, [time.monotonic() + 0.05])
    with pytest.raises(
        ServingError, match="^Run\\(\\) timeout exceeded while waiting in batching queue$"
    ) as info:
        expired.result(30)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert half_plus_two.batch_sizes == [1]  # only the busy run ran


def test_a_batch_with_one_live_task_runs_whole(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    """TF drops a batch only when all of its tasks expired; otherwise every task is answered."""
    batcher = make_batcher(max_batch_size=2)
    later = time.monotonic() + 60
    queued = _behind_a_busy_slot(batcher, half_plus_two, [time.monotonic() + 0.05, later])
    assert [f.result(30)["y"].tolist() for f in queued] == [[[2.5]], [[3.0]]]  # 0.5 * x + 2
    assert half_plus_two.batch_sizes == [1, 2]
    assert half_plus_two.deadlines == [None, later]  # the batch runs until its latest deadline


# ------------------------------------------------------------------ large batch splitting
def test_a_large_task_is_split_into_execution_batches_and_answered_whole(
    make_batcher: MakeBatcher, matrix: RecordingServable
) -> None:
    """7 rows, max_execution_batch_size 3: pieces 3, 3, 1 (InputSplitMetadata), each padded to
    the next allowed size (4, 4, 2), outputs joined back in order."""
    batcher = make_batcher(
        max_batch_size=8,
        allowed_batch_sizes=(2, 4, 8),
        enable_large_batch_splitting=True,
        max_execution_batch_size=3,
    )
    x = np.arange(7 * 9, dtype=np.float32).reshape(7, 3, 3)
    np.testing.assert_array_equal(batcher.run(matrix, "", {"x": x})["y"], 0.5 * x + 2)
    assert matrix.batch_sizes == [4, 4, 2]
    with pytest.raises(ServingError, match="^Task size 9 is larger than maximum input batch size 8$"):
        batcher.run(matrix, "", {"x": np.zeros((9, 3, 3), np.float32)})


def test_a_split_task_first_fills_the_open_batch(
    make_batcher: MakeBatcher, half_plus_two: RecordingServable
) -> None:
    """2 rows wait in the open batch; 5 more with max_execution_batch_size 3 are cut 1, 3, 1:
    the first piece completes the open batch (3 rows), even though 5 would not fit a batch."""
    batcher = make_batcher(
        max_batch_size=8,
        batch_timeout_micros=200_000,
        enable_large_batch_splitting=True,
        max_execution_batch_size=3,
    )
    small = batcher.submit(half_plus_two, "", _x(0.0, 2.0))
    large = batcher.submit(half_plus_two, "", _x(0.0, 4.0, 8.0, 12.0, 16.0))
    assert small is not None and large is not None
    np.testing.assert_array_equal(small.result(30)["y"], [[2.0], [3.0]])
    np.testing.assert_array_equal(large.result(30)["y"], [[2.0], [4.0], [6.0], [8.0], [10.0]])
    assert half_plus_two.batch_sizes == [3, 3, 1]

"""Batcher: requests merged into one run and split back exactly; padding; a full queue refuses."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from serving.model_server.batching import Batcher, BatchingOptions  # noqa: E402
from serving.model_server.config import read_batching_parameters  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402


class RecordingServable(Servable):
    """The real servable, recording the batch size of every run (and optionally holding it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batch_sizes: list[int] = []
        self.threads: list[str] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def run(
        self, signature_name: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        self.batch_sizes.append(next(iter(inputs.values())).shape[0])
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        return super().run(signature_name, inputs, output_filter)


@pytest.fixture(scope="module")
def matrix(tfserving_testdata: Path) -> RecordingServable:
    return RecordingServable("matrix", 1, tfserving_testdata / "matrix_half_plus_two" / "1")


@pytest.fixture(scope="module")
def half_plus_two(tfserving_testdata: Path) -> RecordingServable:
    return RecordingServable("hp2", 123, tfserving_testdata / "saved_model_half_plus_two_cpu" / "00000123")


def _concurrently(batcher: Batcher, servable: Servable, inputs: list[dict[str, np.ndarray]]) -> list:
    with ThreadPoolExecutor(len(inputs)) as pool:
        futures = [pool.submit(batcher.run, servable, "", item) for item in inputs]
        return [f.result(timeout=60) for f in futures]


def test_concurrent_requests_are_merged_and_split_exactly(matrix: RecordingServable) -> None:
    batcher = Batcher(BatchingOptions(max_batch_size=6, batch_timeout_micros=30_000_000, num_batch_threads=1))
    try:
        rng = np.random.default_rng(0)
        inputs = [{"x": rng.normal(size=(n, 3, 3)).astype(np.float32)} for n in (1, 2, 3)]
        matrix.batch_sizes.clear()
        results = _concurrently(batcher, matrix, inputs)
        # The batch closes when full (6 rows), long before the 30 s timeout: one run.
        assert matrix.batch_sizes == [6]
        for item, result in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(result["y"], 0.5 * item["x"] + 2)
    finally:
        batcher.stop()


def test_allowed_batch_sizes_pad_then_slice(matrix: RecordingServable) -> None:
    options = BatchingOptions(
        max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1, allowed_batch_sizes=(2, 4, 8)
    )
    batcher = Batcher(options)
    try:
        x = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
        matrix.batch_sizes.clear()
        result = batcher.run(matrix, "serving_default", {"x": x})
        assert matrix.batch_sizes == [4]  # 3 rows padded up to the next allowed size
        np.testing.assert_array_equal(result["y"], 0.5 * x + 2)
    finally:
        batcher.stop()


def test_pad_variable_length_inputs(half_plus_two: RecordingServable) -> None:
    options = BatchingOptions(
        max_batch_size=2,
        batch_timeout_micros=30_000_000,
        num_batch_threads=1,
        pad_variable_length_inputs=True,
    )
    batcher = Batcher(options)
    try:
        short = {"x": np.array([[1.0]], np.float32)}
        long = {"x": np.array([[4.0, 6.0]], np.float32)}
        half_plus_two.batch_sizes.clear()
        got_short, got_long = _concurrently(batcher, half_plus_two, [short, long])
        assert half_plus_two.batch_sizes == [2]
        # The short row was padded with its own first element, as TF Serving pads.
        np.testing.assert_array_equal(got_short["y"], [[2.5, 2.5]])
        np.testing.assert_array_equal(got_long["y"], [[4.0, 5.0]])
    finally:
        batcher.stop()


def test_full_queue_answers_resource_exhausted(half_plus_two: RecordingServable) -> None:
    batcher = Batcher(
        BatchingOptions(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1)
    )
    x = {"x": np.array([1.0], np.float32)}
    half_plus_two.gate = threading.Event()
    half_plus_two.entered.clear()
    pool = ThreadPoolExecutor(2)
    try:
        first = pool.submit(batcher.run, half_plus_two, "", x)
        assert half_plus_two.entered.wait(30)  # the only batch thread is now busy
        second = pool.submit(batcher.run, half_plus_two, "", x)  # fills the one queue slot
        deadline = threading.Event()
        for _ in range(600):
            with batcher._cond:
                if any(batcher._queues.values()):
                    break
            deadline.wait(0.05)
        with pytest.raises(
            ServingError, match="batch scheduling queue to which this task was submitted is full"
        ) as info:
            batcher.run(half_plus_two, "", x)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        half_plus_two.gate.set()
        assert first.result(30)["y"].tolist() == [2.5]
        assert second.result(30)["y"].tolist() == [2.5]
    finally:
        half_plus_two.gate = None
        pool.shutdown()
        batcher.stop()


def test_bad_requests_fail_alone(half_plus_two: RecordingServable) -> None:
    batcher = Batcher(BatchingOptions(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1))
    try:
        with pytest.raises(ServingError, match="input tensors must have at least one dimension"):
            batcher.run(half_plus_two, "", {"x": np.array(1.0, np.float32)})
        with pytest.raises(ServingError, match=r"Expects arg\[0\] to be float but double is provided"):
            batcher.run(half_plus_two, "", {"x": np.array([1.0])})
        with pytest.raises(ServingError, match='Serving signature key "nope" not found.'):
            batcher.run(half_plus_two, "nope", {"x": np.array([1.0], np.float32)})
        # Larger than max_batch_size: runs on its own with the same result.
        x = np.arange(10, dtype=np.float32)
        np.testing.assert_array_equal(batcher.run(half_plus_two, "", {"x": x})["y"], 0.5 * x + 2)
    finally:
        batcher.stop()


def test_options_from_tf_serving_batching_file(tfserving_testdata: Path) -> None:
    options = BatchingOptions.from_proto(read_batching_parameters(tfserving_testdata / "batching_config.txt"))
    assert options == BatchingOptions(
        max_batch_size=128, batch_timeout_micros=0, num_batch_threads=8, max_enqueued_batches=1_000_000
    )
    with pytest.raises(ValueError, match="last allowed_batch_sizes entry must equal max_batch_size"):
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4))


def test_submit_leaves_oversized_and_empty_requests_to_the_caller(half_plus_two: RecordingServable) -> None:
    batcher = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1))
    try:
        assert batcher.submit(half_plus_two, "", {"x": np.zeros((3, 1), np.float32)}) is None
        assert batcher.submit(half_plus_two, "", {"x": np.zeros((0, 1), np.float32)}) is None
        future = batcher.submit(half_plus_two, "", {"x": np.array([[2.0]], np.float32)})
        assert future is not None
        np.testing.assert_allclose(future.result(timeout=30)["y"], [[3.0]])  # 0.5 * 2 + 2
    finally:
        batcher.stop()


def test_a_batch_is_processed_by_the_thread_that_fills_it_while_a_slot_is_free(
    half_plus_two: RecordingServable,
) -> None:
    """A full batch runs in the thread whose task filled it (no hand-off to a batch thread),
    but never beyond num_batch_threads batches at once: a second full batch waits for the
    slot and goes to a batch thread."""
    batcher = Batcher(BatchingOptions(max_batch_size=1, batch_timeout_micros=30_000_000, num_batch_threads=1))
    half_plus_two.batch_sizes.clear()
    half_plus_two.threads.clear()
    half_plus_two.entered.clear()
    half_plus_two.gate = threading.Event()
    try:
        results: dict[str, np.ndarray] = {}

        def call(name: str, x: float) -> None:
            results[name] = batcher.run(half_plus_two, "", {"x": np.array([[x]], np.float32)})["y"]

        first = threading.Thread(target=call, args=("first", 1.0), name="caller-first")
        first.start()
        assert half_plus_two.entered.wait(30)
        second = threading.Thread(target=call, args=("second", 3.0), name="caller-second")
        second.start()
        time.sleep(0.3)
        assert half_plus_two.threads == ["caller-first"]  # the second waits for the only slot
        half_plus_two.gate.set()
        first.join(30)
        second.join(30)
        assert half_plus_two.threads[0] == "caller-first"
        assert half_plus_two.threads[1].startswith("batch-thread")
        assert results["first"].tolist() == [[2.5]] and results["second"].tolist() == [[3.5]]
    finally:
        half_plus_two.gate = None
        batcher.stop()

"""The local batch backend's background stages: bounded, errors raised in the caller, nothing left on failure."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from export.batch_input import wire_inputs
from export.batch_job import score_local
from export.batch_model import BatchScorer, chunk_tensors
from export.batch_pipeline import BackgroundSink, prefetched
from export.batches import frame_inputs
from export.errors import ExportError
from tests.export.conftest import tiny_frame
from tests.export.test_batch_score import config, no_temporaries, read_output, write_parquet


def wait_until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def counted(n: int, produced: list[int]) -> Iterator[int]:
    """0..n-1, recording in ``produced`` each one handed out (so a test sees how far ahead a reader ran)."""
    for i in range(n):
        produced.append(i)
        yield i


def test_prefetched_stays_at_most_depth_ahead_and_keeps_order() -> None:
    produced: list[int] = []
    items = prefetched(counted(20, produced), depth=3)
    assert next(items) == 0
    time.sleep(0.2)  # give the producer every chance to run ahead
    # taken: 1; queued: at most 3; and one more held by a producer blocked on the full queue
    assert len(produced) <= 1 + 3 + 1
    assert [0, *items] == list(range(20))


def test_prefetched_raises_the_producers_error_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("row 7 is bad")

    seen = []
    with pytest.raises(ValueError, match="row 7 is bad"):
        for item in prefetched(source(), depth=2):
            seen.append(item)
    assert seen == [1, 2]


def test_closing_prefetched_early_stops_the_producer() -> None:
    produced: list[int] = []
    items = prefetched(counted(10_000, produced), depth=2, name="test-reader")
    next(items)
    items.close()
    count = len(produced)
    time.sleep(0.1)
    assert len(produced) == count < 10
    assert not [t for t in threading.enumerate() if t.name == "test-reader"]


def test_background_sink_blocks_a_producer_beyond_depth_and_consumes_in_order() -> None:
    release = threading.Event()
    consumed: list[int] = []

    def consume(item: int) -> None:
        release.wait()
        consumed.append(item)

    sink = BackgroundSink(consume, depth=2)
    put_done: list[int] = []

    def producer() -> None:
        for i in range(6):
            sink.put(i)
            put_done.append(i)

    thread = threading.Thread(target=producer)
    thread.start()
    time.sleep(0.2)
    # the consumer holds item 0, the queue items 1 and 2; put(3) waits
    assert put_done == [0, 1, 2]
    release.set()
    thread.join(5)
    sink.close()
    assert consumed == list(range(6))


def test_background_sink_raises_the_consumers_error_in_put_and_close() -> None:
    finished = threading.Event()

    def consume(item: int) -> None:
        if item == 2:
            raise OSError("disk full")

    sink = BackgroundSink(consume, depth=1, finish=finished.set)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):  # the error reaches a later put, whatever the timing
            sink.put(i)
    with pytest.raises(OSError, match="disk full"):
        sink.close()
    assert finished.is_set()  # the writer was still closed


def test_background_sink_left_on_an_error_skips_queued_items_and_finishes() -> None:
    consumed: list[int] = []
    release = threading.Event()
    finished = threading.Event()

    def consume(item: int) -> None:
        release.wait()
        consumed.append(item)

    with pytest.raises(RuntimeError, match="scoring failed"):
        with BackgroundSink(consume, depth=3, finish=finished.set) as sink:
            sink.put(0)
            wait_until(lambda: sink._queue.empty())  # the consumer holds 0
            sink.put(1)
            sink.put(2)
            threading.Timer(0.1, release.set).start()
            raise RuntimeError("scoring failed")
    assert finished.is_set() and consumed == [0]


def test_chunks_are_padded_to_the_chunk_size_and_score_like_score(exported, loaded, contract) -> None:
    frame = tiny_frame(700, seed=3)
    inputs = wire_inputs(contract, pa.Table.from_pandas(frame), fill_defaults=False, where="t", first_row=0)
    chunks = list(chunk_tensors(contract, inputs, 256))
    assert [rows for _, rows in chunks] == [256, 256, 188]
    assert all(t["price"].shape == (256,) for t, _ in chunks)
    last = chunks[-1][0]["user"].numpy()
    assert (last[188:] == last[187]).all()  # padding repeats the last real row
    scorer = BatchScorer.load(exported, chunk_rows=256)
    by_chunk = np.concatenate([scorer.call(t)[:rows] for t, rows in chunks])
    assert np.array_equal(by_chunk, scorer.score(inputs))
    # score() is built from chunk_tensors too: check both against the signature called directly
    # on the whole frame in one go, without chunks or padding (an independent route)
    import tensorflow as tf

    tensors = {
        k: tf.constant(v if v.dtype != object else v.astype(str))
        for k, v in frame_inputs(frame, contract).items()
    }
    direct = loaded.signatures["serving_default"](**tensors)["ctr"].numpy().reshape(-1)
    np.testing.assert_allclose(by_chunk, direct, rtol=1e-5, atol=1e-6)


def test_a_model_that_fails_to_load_in_the_background_fails_the_job_and_leaves_nothing(
    exported, tmp_path: Path
) -> None:
    broken = tmp_path / "broken" / "1"
    shutil.copytree(exported, broken)
    (broken / "saved_model.pb").write_bytes(b"not a saved model")  # the contract still reads
    source = write_parquet(tiny_frame(3000, seed=5), tmp_path / "in.parquet")
    with pytest.raises(ExportError, match="tf.saved_model.load failed"):
        score_local(config(broken, [source], tmp_path / "out", batch_rows=500))
    assert not (tmp_path / "out").exists() and no_temporaries(tmp_path)
    assert not [t for t in threading.enumerate() if t.name.startswith(("batch-", "test-"))]


def test_concurrent_model_calls_give_the_bits_of_one_caller(exported, tmp_path: Path) -> None:
    frame = tiny_frame(4000, seed=9)
    source = write_parquet(frame, tmp_path / "in.parquet")
    one = score_local(config(exported, [source], tmp_path / "one", batch_rows=900, chunk_rows=128, callers=1))
    three = score_local(
        config(exported, [source], tmp_path / "three", batch_rows=900, chunk_rows=128, callers=3)
    )
    scores = [read_output(tmp_path / name)["score"].to_numpy() for name in ("one", "three")]
    assert one == three == len(frame) and np.array_equal(scores[0], scores[1])
    scorer = BatchScorer.load(exported, chunk_rows=128)
    inputs = wire_inputs(
        scorer.contract, pa.Table.from_pandas(frame), fill_defaults=False, where="t", first_row=0
    )
    assert np.array_equal(scores[1], scorer.score(inputs))  # in input order, same chunks as score()

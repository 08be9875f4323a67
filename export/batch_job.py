"""One batch-scoring job: its configuration, the atomic output folder, and the local backend.

The output is a folder of Parquet part files plus ``_SUCCESS``, the layout Spark writes, so both
backends produce the same kind of result. It is written under a hidden temporary name beside
the target and renamed when complete: a killed run leaves only ``.tmp-*`` folders, never
something that looks finished.
"""

from __future__ import annotations

import queue
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from export.batch_input import check_parquet_files, iter_batches, wire_inputs
from export.batch_model import DEFAULT_CHUNK_ROWS, BatchScorer
from export.errors import ExportError

SUCCESS_MARKER = "_SUCCESS"
DEFAULT_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class BatchScoreConfig:
    """Everything ``recsys-batch-score`` needs (the one config object of its process).

    Attributes:
        version_dir: the SavedModel version to score with (resolved by ``resolve_version_dir``).
        inputs: the input files, all of ``input_format``.
        input_format: "parquet" or "csv".
        output: the output folder (must not exist unless ``overwrite``).
        passthrough: input columns copied beside the score (ids, label).
        score_column: the score's column name.
        backend: "local" or "spark".
        fill_defaults: fill nulls and absent feature columns with the contract's defaults.
        batch_rows: rows read at a time (bounds memory).
        chunk_rows: rows per signature call (the same for both backends: identical scores).
        overwrite: replace an existing output folder.
        spark_master: the Spark master URL (``local[*]`` here; ignored under spark-submit).
        progress: show a progress bar.
    """

    version_dir: Path
    inputs: tuple[Path, ...]
    input_format: str
    output: Path
    passthrough: tuple[str, ...] = ()
    score_column: str = "score"
    backend: str = "local"
    fill_defaults: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    overwrite: bool = False
    spark_master: str | None = None
    progress: bool = True
    spark_conf: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.backend not in ("local", "spark"):
            raise ExportError(f"backend must be 'local' or 'spark', got {self.backend!r}")
        if self.batch_rows < 1 or self.chunk_rows < 1:
            raise ExportError("batch and chunk rows must be positive")
        if self.score_column in self.passthrough:
            raise ExportError(f"score column {self.score_column!r} is also a pass-through column")


def temporary_output(output: Path, *, overwrite: bool) -> Path:
    """A fresh hidden folder beside ``output`` (same filesystem, so the final rename is atomic)."""
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists; pass --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.parent / f".tmp-{output.name}-{secrets.token_hex(4)}"


def publish_output(tmp: Path, output: Path) -> None:
    """Mark ``tmp`` complete and rename it to ``output`` (an old output is moved away first)."""
    (tmp / SUCCESS_MARKER).write_bytes(b"")
    old = None
    if output.exists():
        old = output.parent / f".old-{output.name}-{secrets.token_hex(4)}"
        output.rename(old)
    tmp.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def output_schema(config: BatchScoreConfig, first: pa.Schema) -> pa.Schema:
    """Pass-through columns as they are in the input, then the float32 score."""
    fields = [first.field(name) for name in config.passthrough]
    return pa.schema([*fields, pa.field(config.score_column, pa.float32(), nullable=False)])


def _prefetched(items: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Read the next batches in a thread while the current one is scored (reading and decoding
    are Arrow C++ work that releases the GIL), at most ``depth`` ahead."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="batch-reader", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
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


def score_local(config: BatchScoreConfig, *, on_rows: Callable[[int], None] = lambda n: None) -> int:
    """Score every input row in this process; returns the number of rows written."""
    scorer = BatchScorer.load(config.version_dir, chunk_rows=config.chunk_rows)
    contract = scorer.contract
    if config.input_format == "parquet":
        check_parquet_files(
            contract, config.inputs, passthrough=config.passthrough, fill_defaults=config.fill_defaults
        )
    columns = list(dict.fromkeys([*contract.names, *config.passthrough]))
    tmp = temporary_output(config.output, overwrite=config.overwrite)
    tmp.mkdir()
    written = 0
    try:
        writer: pq.ParquetWriter | None = None
        try:
            for path in config.inputs:
                first_row = 0
                batches = iter_batches(
                    path, config.input_format, contract, columns=columns, batch_rows=config.batch_rows
                )
                for batch in _prefetched(batches):
                    inputs = wire_inputs(
                        contract,
                        batch,
                        fill_defaults=config.fill_defaults,
                        where=str(path),
                        first_row=first_row,
                    )
                    scores = scorer.score(inputs) if batch.num_rows else np.zeros(0, np.float32)
                    if writer is None:
                        writer = pq.ParquetWriter(
                            tmp / "part-00000.parquet", output_schema(config, batch.schema)
                        )
                    missing = [c for c in config.passthrough if c not in batch.schema.names]
                    if missing:
                        raise ExportError(f"{path}: missing pass-through columns {missing}")
                    arrays = [
                        batch.column(batch.schema.names.index(c)).cast(writer.schema.field(c).type)
                        for c in config.passthrough
                    ]
                    scored = pa.array(scores, pa.float32())
                    writer.write_batch(pa.RecordBatch.from_arrays([*arrays, scored], schema=writer.schema))
                    first_row += batch.num_rows
                    written += batch.num_rows
                    on_rows(batch.num_rows)
        finally:
            if writer is not None:
                writer.close()
        publish_output(tmp, config.output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written

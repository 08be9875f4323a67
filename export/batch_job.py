"""One batch-scoring job: its configuration, the atomic output folder, and the local backend.

The output is a folder of Parquet part files plus ``_SUCCESS``, the layout Spark writes, so both
backends produce the same kind of result. It is written under a hidden temporary name beside
the target and renamed when complete: a killed run leaves only ``.tmp-*`` folders, never
something that looks finished.
"""

from __future__ import annotations

import secrets
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from export.batch_input import check_csv_files, check_parquet_files, iter_batches, wire_inputs
from export.batch_model import DEFAULT_CHUNK_ROWS, BatchScorer, chunk_tensors
from export.batch_pipeline import BackgroundSink, prefetched
from export.errors import ExportError
from export.saved_model import read_assets
from training.features import FeatureContract

SUCCESS_MARKER = "_SUCCESS"
DEFAULT_BATCH_ROWS = 65_536
PREFETCH_BATCHES = 4  # read batches waiting for the model (each batch_rows rows)
WRITE_BATCHES = 2  # scored batches waiting for the writer
DEFAULT_CALLERS = 2


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
        callers: local signature calls in flight at once (threads); a call holds the GIL only to
            dispatch, so two keep both cores of a small machine busy where one leaves gaps.
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
    callers: int = DEFAULT_CALLERS
    overwrite: bool = False
    spark_master: str | None = None
    progress: bool = True
    spark_conf: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.backend not in ("local", "spark"):
            raise ExportError(f"backend must be 'local' or 'spark', got {self.backend!r}")
        if self.batch_rows < 1 or self.chunk_rows < 1 or self.callers < 1:
            raise ExportError("batch rows, chunk rows and callers must be positive")
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


def check_input_files(config: BatchScoreConfig, contract: FeatureContract) -> None:
    """Every input file against the contract before any row is scored, the one check of both
    backends (Parquet: schema and nulls from the footers; CSV: header and first block's types)."""
    check = check_parquet_files if config.input_format == "parquet" else check_csv_files
    check(contract, config.inputs, passthrough=config.passthrough, fill_defaults=config.fill_defaults)


def output_schema(config: BatchScoreConfig, first: pa.Schema) -> pa.Schema:
    """Pass-through columns typed as in the first input (a dictionary as its values: the reader's
    encoding, which Spark has no type for, so both backends write the same types), then the
    float32 score."""
    fields = []
    for name in config.passthrough:
        kind = first.field(name).type
        fields.append(pa.field(name, kind.value_type if pa.types.is_dictionary(kind) else kind))
    return pa.schema([*fields, pa.field(config.score_column, pa.float32(), nullable=False)])


def scored_batch(
    batch: pa.RecordBatch, schema: pa.Schema, scores: np.ndarray, *, where: str
) -> pa.RecordBatch:
    """The output rows of one input batch: its pass-through columns cast to ``schema`` (from
    :func:`output_schema`), then ``scores`` (both backends build their output with this)."""
    names = batch.schema.names
    passthrough = schema.names[:-1]
    missing = [c for c in passthrough if c not in names]
    if missing:
        raise ExportError(f"{where}: missing pass-through columns {missing}")
    kept = [batch.column(names.index(c)).cast(schema.field(c).type) for c in passthrough]
    return pa.RecordBatch.from_arrays([*kept, pa.array(scores, pa.float32())], schema=schema)


@dataclass(frozen=True)
class _ReadBatch:
    """One input batch, read and converted on the reader thread: the pass-through columns and
    the signature tensors of its chunks."""

    path: Path
    batch: pa.RecordBatch
    chunks: list[tuple[dict[str, Any], int]]


def _read_all(
    config: BatchScoreConfig, contract: FeatureContract, columns: list[str]
) -> Iterator[_ReadBatch]:
    for path in config.inputs:
        first_row = 0
        batches = iter_batches(
            path, config.input_format, contract, columns=columns, batch_rows=config.batch_rows
        )
        for batch in batches:
            inputs = wire_inputs(
                contract, batch, fill_defaults=config.fill_defaults, where=str(path), first_row=first_row
            )
            chunks = list(chunk_tensors(contract, inputs, config.chunk_rows)) if batch.num_rows else []
            yield _ReadBatch(path, batch, chunks)
            first_row += batch.num_rows


def _call(scorer: BatchScorer, tensors: dict[str, Any], rows: int) -> np.ndarray:
    return scorer.call(tensors)[:rows]


def _load_warm(config: BatchScoreConfig) -> BatchScorer:
    scorer = BatchScorer.load(config.version_dir, chunk_rows=config.chunk_rows)
    scorer.warm()
    return scorer


def score_local(
    config: BatchScoreConfig,
    *,
    on_rows: Callable[[int], None] = lambda n: None,
    scorer: BatchScorer | None = None,
) -> int:
    """Score every input row in this process; returns the number of rows written.

    ``scorer``, when given, is a model already loaded (and warmed) for ``config``'s version and
    chunk size: a process scoring several tables loads it once, as a Spark worker does.

    Four things overlap: the model loads (and is warmed on one chunk) on its own thread while
    the inputs are checked and the first batches read; a reader thread reads, checks and turns
    batches into signature tensors at most ``PREFETCH_BATCHES`` ahead; ``callers`` threads call
    the signature on the chunks of at most two batches; a writer thread encodes the Parquet
    output at most ``WRITE_BATCHES`` behind. Each chunk is still exactly ``chunk_rows`` rows,
    so the scores are the bits the Spark backend gives.
    """
    if scorer is not None and (scorer.version_dir, scorer.chunk_rows) != (
        config.version_dir,
        config.chunk_rows,
    ):
        raise ExportError(f"the given scorer is {scorer.version_dir} at {scorer.chunk_rows} rows per call")
    contract, _ = read_assets(config.version_dir)
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-model")
    loading: Future[BatchScorer] = Future()
    if scorer is None:
        loading = loader.submit(_load_warm, config)
    else:
        loading.set_result(scorer)
    try:
        check_input_files(config, contract)
        tmp = temporary_output(config.output, overwrite=config.overwrite)
        tmp.mkdir()
    except BaseException:
        loading.cancel()
        loader.shutdown(wait=True)
        raise
    columns = list(dict.fromkeys([*contract.names, *config.passthrough]))
    part = tmp / "part-00000.parquet"
    writer: list[pq.ParquetWriter] = []

    def write(batch: pa.RecordBatch) -> None:
        if not writer:
            writer.append(pq.ParquetWriter(part, batch.schema))
        writer[0].write_batch(batch)

    written = 0
    pool = ThreadPoolExecutor(max_workers=config.callers, thread_name_prefix="batch-call")
    try:
        with BackgroundSink(write, depth=WRITE_BATCHES, finish=lambda: [w.close() for w in writer]) as sink:
            schema: pa.Schema | None = None

            def emit(item: _ReadBatch, calls: list[Future[np.ndarray]]) -> None:
                nonlocal schema, written
                batch = item.batch
                schema = schema or output_schema(config, batch.schema)
                scores = [call.result() for call in calls]
                scored = np.concatenate(scores) if scores else np.zeros(0, np.float32)
                sink.put(scored_batch(batch, schema, scored, where=str(item.path)))
                written += batch.num_rows
                on_rows(batch.num_rows)

            reader = closing(prefetched(_read_all(config, contract, columns), depth=PREFETCH_BATCHES))
            in_flight: deque[tuple[_ReadBatch, list[Future[np.ndarray]]]] = deque()
            with reader as items:  # closing: a failure here stops the reader thread too
                for item in items:
                    loaded = loading.result()
                    # chunks of this batch are called while the previous batch's last ones finish
                    in_flight.append((item, [pool.submit(_call, loaded, t, rows) for t, rows in item.chunks]))
                    if len(in_flight) > 1:
                        emit(*in_flight.popleft())
                while in_flight:
                    emit(*in_flight.popleft())
        loading.result()  # a model that does not load fails the job even without input rows
        publish_output(tmp, config.output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        loader.shutdown(wait=True)
    return written

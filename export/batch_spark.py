"""The Spark backend of ``recsys-batch-score``: ``DataFrame.mapInArrow`` over the same reader and scorer.

Spark distributes the input's splits (one Parquet row group or one CSV file each) as tasks; each
Python worker reads its splits with the local backend's reader (``iter_batches``, ``wire_inputs``)
and scores them with ``BatchScorer.score``, so both backends give the same bits for every row,
and Spark writes the output and retries failed tasks. The JVM never decodes the features: it
only carries the pass-through columns and the score. Each worker loads the SavedModel once
(``_worker_scorer`` keeps one per model directory in that worker process, which Spark reuses
across tasks). The model directory and the inputs must be paths every executor sees (a shared
filesystem), as the driver checks the inputs before the job; here ``local[*]`` runs the workers on
this machine. Under ``spark-submit`` the session comes from the submit's own configuration and
``--spark-master`` is ignored.

TensorFlow in a worker uses ``spark.task.cpus`` threads (1 by default), as many as the task was
given, so ``local[N]``'s N workers do not each start a pool the size of the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from export.batch_input import csv_read_options, iter_batches, wire_inputs
from export.batch_job import (
    BatchScoreConfig,
    check_input_files,
    output_schema,
    publish_output,
    scored_batch,
    temporary_output,
)
from export.batch_model import BatchScorer
from export.errors import ExportError
from export.saved_model import read_assets
from training.features import FeatureContract

_SCORERS: dict[tuple[str, int], BatchScorer] = {}  # per worker process: one load per model
_SCORERS_LOCK = threading.Lock()
MAX_TASKS = 10_000  # one split per task up to this many: Spark balances tasks, not rows
_OUR_ERROR = re.compile(r"(?:ContractMismatchError|ExportError): (.+)")


def spark_session(config: BatchScoreConfig) -> Any:
    """The SparkSession: the submit's own under spark-submit, else ``--spark-master`` or
    ``local[*]``, bound to loopback with the UI off."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("recsys-batch-score")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started our driver
    if not submitted:
        master = config.spark_master or "local[*]"
        builder = builder.master(master)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run our interpreter
        if master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config(
                "spark.driver.host", "127.0.0.1"
            )
    builder = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.python.worker.reuse", "true")
        .config("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2")
    )
    for key, value in config.spark_conf:
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _worker_scorer(version_dir: str, chunk_rows: int, threads: int) -> BatchScorer:
    key = (version_dir, chunk_rows)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            import tensorflow as tf

            try:  # only possible before TensorFlow's first op in this process
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:
                pass
            scorer = _SCORERS[key] = BatchScorer.load(Path(version_dir), chunk_rows=chunk_rows)
        return scorer


def input_splits(files: tuple[Path, ...], fmt: str) -> list[tuple[str, int, int]]:
    """The job's splits, one Spark task each: ``(path, row group, its first row)`` per Parquet
    row group (the granularity Spark's own reader splits at), ``(path, -1, 0)`` per CSV file."""
    if fmt != "parquet":
        return [(str(p.resolve()), -1, 0) for p in files]
    splits = []
    for path in files:
        meta = pq.read_metadata(path)
        first = 0
        for group in range(meta.num_row_groups):
            splits.append((str(path.resolve()), group, first))
            first += meta.row_group(group).num_rows
    return splits


def score_splits(
    ids: Iterator[pa.RecordBatch],
    *,
    splits: list[tuple[str, int, int]],
    version_dir: str,
    chunk_rows: int,
    threads: int,
    input_format: str,
    batch_rows: int,
    fill_defaults: bool,
    schema: pa.Schema,
    counter: Any = None,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function over ``spark.range``'s ids: read each id's split with the local
    backend's reader, then the pass-through columns (as ``schema`` types them) and the score of
    every batch. The ids come from the JVM (a DataFrame of the splits themselves would be built
    by an extra Python worker per task, and the model would then load in twice as many workers).

    The worker reads the files itself: handing Spark the rows would cost the JVM a columnar to
    row to Arrow conversion of every feature (measured here: more CPU than the model's calls).
    """
    scorer = _worker_scorer(version_dir, chunk_rows, threads)
    columns = list(dict.fromkeys([*scorer.contract.names, *schema.names[:-1]]))
    for index in (i for chunk in ids for i in chunk.column(0).to_pylist()):
        path, group, first_row = splits[index]
        groups = None if group < 0 else [group]
        reader = iter_batches(
            Path(path),
            input_format,
            scorer.contract,
            columns=columns,
            batch_rows=batch_rows,
            row_groups=groups,
        )
        for batch in reader:
            inputs = wire_inputs(
                scorer.contract, batch, fill_defaults=fill_defaults, where=path, first_row=first_row
            )
            yield scored_batch(batch, schema, scorer.score(inputs), where=path)
            first_row += batch.num_rows
            if counter is not None:
                counter.add(batch.num_rows)


def spark_output_schema(config: BatchScoreConfig, contract: FeatureContract) -> pa.Schema:
    """The output's Arrow schema, known before the job (Spark needs it up front): the local
    backend's :func:`output_schema` of the first input file's schema."""
    if config.input_format == "parquet":
        first = pq.read_schema(config.inputs[0])
    else:
        first = pa_csv.open_csv(config.inputs[0], convert_options=csv_read_options(contract)).schema
    return output_schema(config, first)


def score_spark(config: BatchScoreConfig, *, on_rows: Callable[[int], None] = lambda n: None) -> int:
    """Score every input row on Spark and write the output folder; returns rows written."""
    from pyspark.sql.pandas.types import from_arrow_schema

    contract, _ = read_assets(config.version_dir)
    check_input_files(config, contract)
    schema = spark_output_schema(config, contract)
    try:
        spark_schema = from_arrow_schema(schema)
    except TypeError as exc:
        raise ExportError(f"a pass-through column has a type Spark cannot hold: {exc}") from None
    tmp = temporary_output(config.output, overwrite=config.overwrite)
    spark = spark_session(config)
    splits = input_splits(config.inputs, config.input_format)
    tasks = min(len(splits), MAX_TASKS)
    frame = spark.range(len(splits), numPartitions=tasks)
    counter = spark.sparkContext.accumulator(0)
    fn = partial(
        score_splits,
        splits=splits,
        version_dir=str(config.version_dir.resolve()),
        chunk_rows=config.chunk_rows,
        threads=int(spark.conf.get("spark.task.cpus", "1")),
        input_format=config.input_format,
        batch_rows=config.batch_rows,
        fill_defaults=config.fill_defaults,
        schema=schema,
        counter=counter,
    )
    done = threading.Event()
    reported = [0]

    def report() -> None:
        while not done.wait(0.5):
            value = counter.value
            on_rows(value - reported[0])
            reported[0] = value

    reporter = threading.Thread(target=report, name="spark-progress", daemon=True)
    reporter.start()
    try:
        frame.mapInArrow(fn, spark_schema).write.parquet(str(tmp))
        publish_output(tmp, config.output)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ExportError):
            raise
        found = _OUR_ERROR.findall(str(exc))
        raise ExportError(f"the Spark job failed: {found[-1] if found else str(exc)[-2000:]}") from None
    finally:
        done.set()
        reporter.join()
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in config.output.glob("*.parquet"))
    on_rows(rows - reported[0])  # accumulators may count a retried task twice; the files do not
    return rows

"""The Spark backend of ``recsys-batch-score``: ``DataFrame.mapInArrow`` over the same scorer.

Each Python worker loads the SavedModel once (``_worker_scorer`` keeps one per model directory
in that worker process, which Spark reuses across tasks) and scores the Arrow batches Spark
hands it with ``BatchScorer.score``, the local backend's code, so both backends give the same
bits for every row. The model directory must be a path every executor sees (a shared
filesystem); here ``local[*]`` runs the workers on this machine. Under ``spark-submit`` the
session comes from the submit's own configuration and ``--spark-master`` is ignored.

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
import pyarrow.parquet as pq

from export.batch_input import check_parquet_files, check_schema, wire_inputs
from export.batch_job import BatchScoreConfig, publish_output, temporary_output
from export.batch_model import BatchScorer
from export.errors import ExportError
from export.saved_model import read_assets

_SCORERS: dict[tuple[str, int], BatchScorer] = {}  # per worker process: one load per model
_SCORERS_LOCK = threading.Lock()
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
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.batch_rows))
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


def score_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    version_dir: str,
    chunk_rows: int,
    threads: int,
    fill_defaults: bool,
    passthrough: tuple[str, ...],
    score_column: str,
    counter: Any = None,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function: pass-through columns and the score of every batch."""
    scorer = _worker_scorer(version_dir, chunk_rows, threads)
    seen = 0
    for batch in batches:
        inputs = wire_inputs(
            scorer.contract, batch, fill_defaults=fill_defaults, where="a Spark partition", first_row=seen
        )
        scores = pa.array(scorer.score(inputs), pa.float32())
        names = batch.schema.names
        columns = [batch.column(names.index(c)) for c in passthrough]
        yield pa.RecordBatch.from_arrays([*columns, scores], names=[*passthrough, score_column])
        seen += batch.num_rows
        if counter is not None:
            counter.add(batch.num_rows)


def _read(spark: Any, config: BatchScoreConfig, contract: Any) -> Any:
    from pyspark.sql import functions as F

    paths = [str(p) for p in config.inputs]
    if config.input_format == "parquet":
        return spark.read.parquet(*paths)
    frame = spark.read.option("header", True).option("mode", "FAILFAST").csv(paths, inferSchema=False)
    for feature in contract.features:
        if feature.name in frame.columns:
            wire = {"string": "string", "int64": "bigint", "float32": "float"}[feature.dtype]
            column = F.col(f"`{feature.name}`")
            # Spark reads an empty CSV field as null; a string feature's empty field is "" (local does the same)
            frame = frame.withColumn(
                feature.name, F.coalesce(column, F.lit("")) if wire == "string" else column.cast(wire)
            )
    return frame


def score_spark(config: BatchScoreConfig, *, on_rows: Callable[[int], None] = lambda n: None) -> int:
    """Score every input row on Spark and write the output folder; returns rows written."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import FloatType, StructField, StructType

    contract, _ = read_assets(config.version_dir)
    if config.input_format == "parquet":
        check_parquet_files(
            contract, config.inputs, passthrough=config.passthrough, fill_defaults=config.fill_defaults
        )
    tmp = temporary_output(config.output, overwrite=config.overwrite)
    spark = spark_session(config)
    frame = _read(spark, config, contract)
    check_schema(
        contract,
        to_arrow_schema(frame.schema),
        source=", ".join(str(p) for p in config.inputs[:3]),
        passthrough=config.passthrough,
        fill_defaults=config.fill_defaults,
    )
    columns = list(dict.fromkeys([c for c in [*contract.names, *config.passthrough] if c in frame.columns]))
    schema = StructType(
        [frame.schema[c] for c in config.passthrough] + [StructField(config.score_column, FloatType(), False)]
    )
    counter = spark.sparkContext.accumulator(0)
    fn = partial(
        score_partition,
        version_dir=str(config.version_dir.resolve()),
        chunk_rows=config.chunk_rows,
        threads=int(spark.conf.get("spark.task.cpus", "1")),
        fill_defaults=config.fill_defaults,
        passthrough=config.passthrough,
        score_column=config.score_column,
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
        frame.select(*[f"`{c}`" for c in columns]).mapInArrow(fn, schema).write.parquet(str(tmp))
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

"""Benchmark recsys-batch-score: rows/s of the local and Spark backends against the bare signature loop.

Writes ``--rows`` rows (default 2,000,000) of contract-shaped data for the given export (values
drawn from each feature's vocabulary, with 5% unseen, numeric values around their statistics) as
``--files`` Parquet files, then times, in this order:

* ``bare``: the in-process signature over the same rows already decoded to wire arrays, in the
  scorer's chunks (building the chunks' tensors and calling the model; no reading, no writing, no
  model load: the model is loaded and warmed once before): the ceiling;
* ``bare N callers``: the same with ``--callers`` calls in flight at once, as ``local`` makes
  them (the stricter ceiling for ``local``, which ``bare`` is not once ``--callers`` > 1);
* ``local end to end``: ``recsys-batch-score --backend local`` as a fresh job runs it (load the
  model, read, check, score, write);
* ``local warm``: the same job with the model already loaded and warmed (``score_local`` given
  the bench's scorer), as a Spark worker has it from its second task on;
* ``spark one-shot``: the Spark backend including the session's start-up and the workers' loads;
* ``spark warm``: the Spark backend again with the session up and its Python workers (and
  their loaded models) reused.

Each is run ``--repeats`` times (one-shot once) and the median is reported. The model load and
first call are also timed apart (once per repeat). The ratios at the end compare like with
like: ``spark warm`` against ``local warm`` (both with the model loaded), and each end to end
run against the other. Numbers go into notes, never asserts. ``--chunk-rows`` and the
TensorFlow thread settings apply to every row of the table.

Example:
    python benchmarks/bench_batch_score.py --model runs/demo/serving/ctr/1 --rows 2000000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export.batch_input import discover_inputs, wire_inputs  # noqa: E402
from export.batch_job import DEFAULT_CALLERS, BatchScoreConfig, score_local  # noqa: E402
from export.batch_model import DEFAULT_CHUNK_ROWS, BatchScorer, chunk_tensors  # noqa: E402
from training.features import FeatureContract, FeatureKind  # noqa: E402


def synthetic_table(contract: FeatureContract, rows: int, rng: np.random.Generator) -> pa.Table:
    """Rows shaped like the contract's features (5% of categorical values unseen)."""
    columns = {}
    for f in contract.features:
        if f.kind is FeatureKind.NUMERIC:
            values = rng.normal(f.mean, f.std, rows)
            if f.transform == "log1p":
                values = np.expm1(np.abs(values))
            columns[f.name] = pa.array(values.astype(np.float32))
            continue
        vocab = list(f.vocabulary or [f"h{i}" for i in range(1000)])
        picks = rng.integers(0, len(vocab), rows)
        if f.dtype == "int64":
            values = np.asarray(vocab, dtype=np.int64)[picks]
            values[rng.random(rows) < 0.05] = -7
            columns[f.name] = pa.array(values)
            continue
        strings = np.asarray(vocab, dtype=object)[picks]
        if f.kind is FeatureKind.MULTI_CATEGORICAL:
            second = np.asarray(vocab, dtype=object)[rng.integers(0, len(vocab), rows)]
            strings = np.char.add(np.char.add(strings.astype(str), "|"), second.astype(str)).astype(object)
        strings[rng.random(rows) < 0.05] = "unseen"
        columns[f.name] = pa.array(strings, pa.string())
    columns["row_id"] = pa.array(np.arange(rows, dtype=np.int64))
    return pa.table(columns)


def bare_loop(scorer: BatchScorer, table: pa.Table, callers: int = 1) -> float:
    """Seconds to score the table's decoded wire arrays with nothing else around the model; with
    ``callers`` > 1 that many signature calls are in flight at once, as the local backend makes
    them (the ceiling for its scoring part)."""
    inputs = wire_inputs(scorer.contract, table, fill_defaults=False, where="bench", first_row=0)
    start = time.perf_counter()
    if callers == 1:
        scorer.score(inputs)
    else:
        chunks = chunk_tensors(scorer.contract, inputs, scorer.chunk_rows)
        with ThreadPoolExecutor(max_workers=callers) as pool:
            list(pool.map(lambda chunk: scorer.call(chunk[0])[: chunk[1]], chunks))
    return time.perf_counter() - start


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="SavedModel version directory")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=8, help="input Parquet files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per model call")
    parser.add_argument("--callers", type=int, default=DEFAULT_CALLERS, help="local model calls in flight")
    parser.add_argument("--intra-op-threads", type=int, default=0, help="TensorFlow's (0: its default)")
    parser.add_argument("--inter-op-threads", type=int, default=0, help="TensorFlow's (0: its default)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    scorer = BatchScorer.load(args.model, chunk_rows=args.chunk_rows)
    table = synthetic_table(scorer.contract, args.rows, np.random.default_rng(args.seed))
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        step = -(-args.rows // args.files)
        (root / "in").mkdir()
        for k in range(args.files):
            pq.write_table(table.slice(k * step, step), root / "in" / f"part-{k:03d}.parquet")
        files, fmt = discover_inputs([str(root / "in")])

        def job(backend: str, name: str) -> BatchScoreConfig:
            return BatchScoreConfig(
                version_dir=args.model,
                inputs=tuple(files),
                input_format=fmt,
                output=root / name,
                passthrough=("row_id",),
                backend=backend,
                overwrite=True,
                spark_master=args.spark_master,
                progress=False,
                chunk_rows=args.chunk_rows,
                callers=args.callers,
            )

        callers = f"bare {args.callers} callers"
        results: dict[str, list[float]] = {"bare": [], callers: [], "local end to end": [], "local warm": []}
        loads: list[float] = []
        bare_loop(scorer, table.slice(0, 50_000))  # warm the graph
        for _ in range(args.repeats):
            results["bare"].append(bare_loop(scorer, table))
            results[callers].append(bare_loop(scorer, table, args.callers))
            results["local end to end"].append(timed(lambda: score_local(job("local", "local"))))
            results["local warm"].append(timed(lambda: score_local(job("local", "local"), scorer=scorer)))
            loads.append(timed(lambda: BatchScorer.load(args.model, chunk_rows=args.chunk_rows).warm()))
        if not args.skip_spark:
            from export.batch_spark import score_spark

            results["spark one-shot"] = [timed(lambda: score_spark(job("spark", "spark")))]
            results["spark warm"] = [
                timed(lambda: score_spark(job("spark", "spark"))) for _ in range(args.repeats)
            ]
    rate = {name: args.rows / statistics.median(times) for name, times in results.items()}
    print(f"{args.rows:,} rows of {args.model} ({len(scorer.contract.names)} features), {args.files} files")
    print(
        f"chunk rows {args.chunk_rows}, TF threads intra {args.intra_op_threads} inter {args.inter_op_threads}"
    )
    print(f"{'path':18} {'rows/s':>12} {'vs bare':>8}   runs (s)")
    for name, times in results.items():
        runs = " ".join(f"{t:.1f}" for t in times)
        print(f"{name:18} {rate[name]:12,.0f} {rate[name] / rate['bare']:8.2f}   {runs}")
    print(
        f"model load + first call (in local end to end, not in local warm): "
        f"{statistics.median(loads):.2f} s, median of {' '.join(f'{t:.2f}' for t in loads)}"
    )
    warm = rate["local warm"]
    print(f"local warm / {callers}: {warm / rate[callers]:.2f}")
    if "spark warm" in rate:
        print(f"spark warm / local warm (both with the model loaded): {rate['spark warm'] / warm:.2f}")
        print(f"spark warm / local end to end: {rate['spark warm'] / rate['local end to end']:.2f}")
        print(f"spark one-shot / local end to end: {rate['spark one-shot'] / rate['local end to end']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

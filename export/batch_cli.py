"""``recsys-batch-score``: score a table with an exported SavedModel, locally or on Spark.

Writes a folder of Parquet part files holding the pass-through columns and the score, complete
with ``_SUCCESS``, or nothing: the folder appears by one rename when every row is scored.

Exit codes: 0 success; 1 an error (bad model path, inputs that do not fit the contract, a
Spark job that failed); 2 bad command-line usage.

Examples:
    recsys-batch-score --model runs/demo/serving/ctr/1 --input logs/day=2026-12-06 \\
        --output scores/day=2026-12-06 --keep user_id --keep item_id
    recsys-batch-score --model runs/demo/serving --model-name ctr --input 'logs/*.parquet' \\
        --output scores --backend spark --spark-master local[*]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from export.batch_input import discover_inputs
from export.batch_job import DEFAULT_BATCH_ROWS, DEFAULT_CALLERS, BatchScoreConfig, score_local
from export.batch_model import DEFAULT_CHUNK_ROWS, resolve_version_dir
from export.errors import ExportError

EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-batch-score",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        help="a version directory <base>/<name>/<v>, or a base path with --model-name",
    )
    parser.add_argument("--model-name", default=None, help="model name under a base path")
    parser.add_argument(
        "--version", default=None, help="version under <base>/<name> (default: the latest blessed one)"
    )
    parser.add_argument(
        "--input", action="append", required=True, help="Parquet/CSV file, folder or glob (repeatable)"
    )
    parser.add_argument("--output", required=True, type=Path, help="output folder (Parquet part files)")
    parser.add_argument(
        "--keep", action="append", default=[], help="input column copied to the output (repeatable)"
    )
    parser.add_argument("--score-column", default="score", help="name of the score column (default: score)")
    parser.add_argument("--backend", choices=("local", "spark"), default="local", help="default: local")
    parser.add_argument(
        "--fill-defaults",
        action="store_true",
        help="fill nulls and absent feature columns with the contract's cold-start defaults",
    )
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="rows read at a time")
    parser.add_argument(
        "--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per model call (both backends)"
    )
    parser.add_argument(
        "--callers",
        type=int,
        default=DEFAULT_CALLERS,
        help=f"local backend: model calls in flight at once (default {DEFAULT_CALLERS})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument(
        "--spark-master", default=None, help="Spark master (default local[*]; under spark-submit: its own)"
    )
    parser.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> BatchScoreConfig:
    """The job's one config object, with the model and inputs resolved and checked."""
    version_dir = resolve_version_dir(args.model, name=args.model_name, version=args.version)
    files, fmt = discover_inputs(args.input)
    conf = []
    for item in args.spark_conf:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ExportError(f"--spark-conf wants KEY=VALUE, got {item!r}")
        conf.append((key, value))
    return BatchScoreConfig(
        version_dir=version_dir,
        inputs=tuple(files),
        input_format=fmt,
        output=args.output,
        passthrough=tuple(dict.fromkeys(args.keep)),
        score_column=args.score_column,
        backend=args.backend,
        fill_defaults=args.fill_defaults,
        batch_rows=args.batch_rows,
        chunk_rows=args.chunk_rows,
        callers=args.callers,
        overwrite=args.overwrite,
        spark_master=args.spark_master,
        progress=not args.quiet,
        spark_conf=tuple(conf),
    )


def run(config: BatchScoreConfig) -> int:
    """Score with the configured backend behind a rows/s progress bar; returns rows written."""
    from tqdm import tqdm

    with tqdm(total=None, unit="rows", unit_scale=True, disable=not config.progress, desc="scoring") as bar:
        if config.backend == "spark":
            from export.batch_spark import score_spark

            return score_spark(config, on_rows=bar.update)
        return score_local(config, on_rows=bar.update)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        rows = run(config)
    except (ExportError, ValueError) as exc:
        print(f"recsys-batch-score: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"scored {rows} rows with {config.version_dir} -> {config.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``recsys-generate``: write the synthetic CTR data set (and optionally a Criteo-format TSV)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .base import DataError, time_cut_points
from .criteo import write_criteo_tsv
from .metrics import roc_auc
from .synthetic import EVENTS_FILE, write_synthetic
from .synthetic_world import SyntheticConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-generate",
        description=(
            "Generate the synthetic CTR data set: events.parquet (time-ordered rows with features, "
            "label and the true click probability p_true), users.parquet, items.parquet and "
            "synthetic.json. Same --seed and sizes give identical files. Prints a JSON summary "
            "(rows/s, bytes, oracle AUC of the default 80/10/10 time split)."
        ),
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="number of events (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created if absent)")
    parser.add_argument(
        "--chunk-rows", type=int, default=200_000, help="rows per parquet row group / memory bound"
    )
    parser.add_argument("--users", type=int, default=SyntheticConfig.num_users, help="number of users")
    parser.add_argument("--items", type=int, default=SyntheticConfig.num_items, help="number of items")
    parser.add_argument(
        "--categories", type=int, default=SyntheticConfig.num_categories, help="item categories"
    )
    parser.add_argument(
        "--days", type=float, default=SyntheticConfig.days, help="time span of the events in days"
    )
    parser.add_argument(
        "--criteo-tsv", type=Path, default=None, help="also write a synthetic Criteo-format TSV to this file"
    )
    parser.add_argument(
        "--criteo-rows", type=int, default=None, help="rows in the Criteo TSV (default: --rows)"
    )
    return parser


def _oracle_by_split(events: Path) -> dict[str, float]:
    frame = pd.read_parquet(events, columns=["timestamp", "label", "p_true"])
    first, second = time_cut_points(frame["timestamp"].to_numpy(), (0.8, 0.1, 0.1))
    parts = {"train": frame.iloc[:first], "valid": frame.iloc[first:second], "test": frame.iloc[second:]}
    return {
        name: round(roc_auc(p["label"].to_numpy(), p["p_true"].to_numpy()), 5) for name, p in parts.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, generate, print a JSON summary; exit code 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        config = SyntheticConfig(
            num_rows=args.rows,
            seed=args.seed,
            num_users=args.users,
            num_items=args.items,
            num_categories=args.categories,
            days=args.days,
        )
        started = time.perf_counter()
        out = write_synthetic(args.out, config, chunk_rows=args.chunk_rows)
        seconds = time.perf_counter() - started
        events = out / EVENTS_FILE
        summary: dict[str, object] = {
            "out": str(out),
            "rows": config.num_rows,
            "seconds": round(seconds, 3),
            "rows_per_second": round(config.num_rows / max(seconds, 1e-9)),
            "events_bytes": events.stat().st_size,
            "oracle_auc": _oracle_by_split(events) if config.num_rows >= 3 else None,
        }
        if args.criteo_tsv is not None:
            rows = args.criteo_rows or args.rows
            write_criteo_tsv(args.criteo_tsv, rows, seed=args.seed)
            summary["criteo_tsv"] = {
                "path": str(args.criteo_tsv),
                "rows": rows,
                "bytes": args.criteo_tsv.stat().st_size,
            }
    except (DataError, OSError) as exc:
        print(f"recsys-generate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m demo.ab``: the simulated A/B, one command from synthetic data to both reports.

synthetic world -> stable and canary DeepFM (the canary's training table has price in hundreds
of dollars) -> offline AUC per arm -> versions 1 and 2 of one model behind the embedded model
server (labels stable, canary) -> the ranker splitting users between them -> simulated users
clicking with the world's true probability times a position decay, posted to /events ->
recsys-online-report and recsys-skew-report per arm -> summary. See docs/AB_WALKTHROUGH.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo.ab.config import ABConfig
from demo.ab.offline import train_and_export
from demo.ab.online import simulate
from demo.ab.reports import print_summary, read_summary, write_reports
from demo.run import REPO
from training.atomic_files import atomic_write_text


def run_ab(cfg: ABConfig) -> dict[str, Any]:
    """The whole A/B; returns the summary (also written to ``cfg.out / "summary.json"``)."""
    paths, auc = train_and_export(cfg)
    online, tally = simulate(cfg, paths, np.random.default_rng(cfg.seed))
    reports = write_reports(cfg, paths, online)
    summary = read_summary(reports, auc, {"degraded": tally.degraded, "arms": tally.as_dict()})
    atomic_write_text(cfg.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# (ABConfig field, type, help): one flag each, its default the config's
OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("rows", int, "synthetic events"),
    ("seed", int, "data, model and traffic seed"),
    ("stable_epochs", int, "stable's training epochs"),
    ("canary_epochs", int, "canary's training epochs"),
    ("requests", int, "simulated visits"),
    ("list_size", int, "candidates served per visit"),
    ("canary_share", float, "canary's traffic share"),
    ("canary_price_scale", float, "the planted unit error: canary's training price x this"),
)


def parse_args(argv: Sequence[str] | None) -> ABConfig:
    d = ABConfig(out=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m demo.ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--out",
        type=Path,
        default=REPO / "runs" / "ab",
        help="working folder (default runs/ab); re-runs reuse finished steps",
    )
    for name, kind, text in OPTIONS:
        default = getattr(d, name)
        add(f"--{name.replace('_', '-')}", type=kind, default=default, help=f"{text} (default {default})")
    args = vars(parser.parse_args(argv))
    try:
        return ABConfig(out=args.pop("out").resolve(), **args)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: error exits


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.perf_counter()
    summary = run_ab(cfg)
    print_summary(summary)
    print(f"\nsimulated A/B finished in {time.perf_counter() - started:.0f} s; everything in {cfg.out}")
    return 0

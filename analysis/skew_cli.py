"""recsys-skew-report: features served (the served-list log) against the training data, and a replay of logged requests.

Training rows come from a Parquet table (--training-table: contract columns) or a training run
(--training-run: its config.json's data, --split). The contract is the exported model's
(--model) or --contract. Writes OUT/report.md, OUT/summary.json and PNGs atomically; exit 1 when
something is flagged (so a pipeline can gate on it), 2 on bad input, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.logs import LogError, LogReport, numbered_records, served_arm_of, served_problem
from analysis.replay import LoggedRequest, replay, sent_rows
from analysis.report_files import save_json, save_text
from analysis.skew_report import Thresholds, compare, markdown, plot_feature, plot_psi, plot_replay
from training.features import ContractError, FeatureContract


@dataclass(frozen=True)
class SkewReportConfig:
    """Everything one run needs (built from the command line)."""

    served: Path
    out: Path
    training_table: Path | None = None
    training_run: Path | None = None
    split: str = "train"
    model: Path | None = None
    model_name: str | None = None
    version: str | None = None
    contract: Path | None = None
    arm: str | None = None
    replay_requests: int = 200
    max_training_rows: int = 1_000_000
    max_bad_lines: int = 100
    seed: int = 0
    thresholds: Thresholds = Thresholds()


def training_columns(config: SkewReportConfig, contract: FeatureContract, rng: np.random.Generator) -> Any:
    """The training rows' contract columns as a DataFrame (sampled down to ``max_training_rows``)."""
    if config.training_table is not None:
        import pandas as pd

        try:
            frame = pd.read_parquet(config.training_table)
        except (OSError, ValueError) as exc:
            raise LogError(f"cannot read training table {config.training_table}: {exc}") from exc
    else:
        from export.run_dir import CONFIG_FILENAME, load_split

        assert config.training_run is not None
        path = config.training_run / CONFIG_FILENAME
        try:
            frame = load_split(json.loads(path.read_text(encoding="utf-8")), config.split)
        except (OSError, ValueError) as exc:
            raise LogError(f"cannot load the {config.split} split of {config.training_run}: {exc}") from exc
    if len(frame) > config.max_training_rows:
        frame = frame.iloc[np.sort(rng.choice(len(frame), config.max_training_rows, replace=False))]
    return frame


def load_model(config: SkewReportConfig) -> tuple[FeatureContract, Any, int | None]:
    """(contract, scorer or None, the model's version number or None)."""
    if config.model is None:
        source = config.contract or (config.training_run if config.training_run is not None else None)
        if source is None:
            raise LogError("give --model (its contract is used) or --contract")
        try:
            return FeatureContract.load(source), None, None
        except (ContractError, OSError) as exc:
            raise LogError(str(exc)) from exc
    from export.batch_model import resolve_version_dir
    from export.errors import ExportError
    from export.saved_model import read_assets
    from export.scoring import load_saved_model, score_saved_model

    try:
        version_dir = resolve_version_dir(config.model, name=config.model_name, version=config.version)
        contract = FeatureContract.load(config.contract) if config.contract else read_assets(version_dir)[0]
        loaded = load_saved_model(version_dir)
    except (ExportError, ContractError, OSError) as exc:
        raise LogError(str(exc)) from exc
    version = int(version_dir.name) if version_dir.name.isdigit() else None
    return contract, lambda inputs: score_saved_model(None, contract, inputs, loaded=loaded), version


def build(config: SkewReportConfig) -> dict[str, Any]:
    """Read, compare, replay and write the report folder; returns the summary (also summary.json)."""
    rng = np.random.default_rng(config.seed)
    contract, score, version = load_model(config)
    log = LogReport(str(config.served))
    records = numbered_records(
        config.served, key="request_id", check=served_problem, report=log, max_bad_lines=config.max_bad_lines
    )
    requests: list[LoggedRequest] = []
    online: dict[str, list[Any]] = {}
    seen: set[str] = set()
    for record in records:
        if record["request_id"] in seen or (config.arm is not None and served_arm_of(record) != config.arm):
            continue
        seen.add(record["request_id"])
        rows = sent_rows(record)
        requests.append(rows)
        for name, values in rows.features.items():
            online.setdefault(name, []).extend(values)
    frame = training_columns(config, contract, rng)
    train = {name: frame[name].tolist() for name in contract.names if name in frame.columns}
    skews = compare(contract, train, online, config.thresholds)
    replayed, other_versions = None, 0
    if score is not None:
        same = [r for r in requests if version is None or r.model_version in (None, version)]
        other_versions = len(requests) - len(same)
        replayed = replay(same, contract, score, sample=config.replay_requests, rng=rng)
    missing = [n for n in contract.names if n not in train or n not in online]
    inputs = [
        log.summary().replace("\n  ", "\n  - "),
        f"{len(requests)} served lists{'' if config.arm is None else f' of arm {config.arm}'}, "
        f"{len(frame)} training rows; contract features not compared (absent from one side): {missing or 'none'}",
        f"replay: {other_versions} lists scored by another model version than {version} left out",
    ]
    config.out.mkdir(parents=True, exist_ok=True)
    plot_psi(skews, config.thresholds, config.out / "psi.png")
    for skew in skews:
        if skew.flags:
            plot_feature(skew, config.out / f"feature_{skew.name}.png")
    if replayed is not None and replayed.rows:
        plot_replay(replayed, config.out / "replay.png")
    replay_flag = replayed is not None and replayed.max_abs_diff > config.thresholds.replay
    data = {
        "flagged": [s.name for s in skews if s.flags],
        "replay_flagged": replay_flag,
        "features": [asdict(s) for s in skews],
        "replay": None if replayed is None else {k: v for k, v in asdict(replayed).items() if k != "diffs"},
        "thresholds": asdict(config.thresholds),
        "log": vars(log),
    }
    save_json(config.out / "summary.json", data)
    save_text(config.out / "report.md", markdown(skews, replayed, config.thresholds, inputs))
    return data


def parse_args(argv: Sequence[str] | None) -> SkewReportConfig:
    parser = argparse.ArgumentParser(prog="recsys-skew-report", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--served", type=Path, required=True, help="served-list log (RANKER_SERVED_LOG_PATH)")
    add("--out", type=Path, required=True, help="folder for report.md, summary.json and PNGs")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--training-table", type=Path, help="Parquet table of training rows (contract columns)")
    data.add_argument(
        "--training-run", type=Path, help="training run folder (its config.json names the data)"
    )
    add(
        "--split",
        default="train",
        choices=("train", "valid", "test"),
        help="with --training-run (default train)",
    )
    add(
        "--model",
        type=Path,
        help="SavedModel version folder, or base path with --model-name: replay through it",
    )
    add("--model-name", help="with a base path --model")
    add("--version", help="with a base path --model (default: the latest blessed)")
    add("--contract", type=Path, help="feature contract (default: the model's, or the training run's)")
    add("--arm", help="only lists this arm's model scored (served_arm; 'default': lists naming no arm)")
    add("--replay-requests", type=int, default=200, help="logged requests replayed (default 200)")
    add("--max-training-rows", type=int, default=1_000_000, help="training rows sampled (default 1,000,000)")
    add("--max-bad-lines", type=int, default=100, help="bad log lines allowed before failing (default 100)")
    add("--seed", type=int, default=0, help="seed of the replay and training samples (default 0)")
    defaults = Thresholds()
    add(
        "--psi-threshold", type=float, default=defaults.psi, help=f"flag PSI >= this (default {defaults.psi})"
    )
    add(
        "--rate-threshold",
        type=float,
        default=defaults.rate,
        help="flag a default/OOV rate gap over this (0.05)",
    )
    add(
        "--min-rows",
        type=int,
        default=defaults.min_rows,
        help="online rows a feature needs to be flagged (100)",
    )
    add(
        "--replay-tolerance", type=float, default=defaults.replay, help="flag a max abs diff over this (1e-4)"
    )
    add("--numeric-bins", type=int, default=defaults.numeric_bins, help="training quantile bins (default 10)")
    add("--top-k", type=int, default=defaults.top_k, help="training values binned by name (default 20)")
    args = vars(parser.parse_args(argv))
    for name in ("replay_requests", "max_training_rows", "numeric_bins", "top_k"):
        if args[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {args[name]}")
    thresholds = Thresholds(
        psi=args.pop("psi_threshold"),
        rate=args.pop("rate_threshold"),
        min_rows=args.pop("min_rows"),
        replay=args.pop("replay_tolerance"),
        numeric_bins=args.pop("numeric_bins"),
        top_k=args.pop("top_k"),
    )
    return SkewReportConfig(**args, thresholds=thresholds)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        data = build(config)
    except (LogError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    replay = data["replay"]
    if replay is not None:
        print(f"replay: {replay['rows']} rows, max abs diff {replay['max_abs_diff']:.3g}", file=sys.stderr)
    print(f"flagged: {data['flagged'] or 'none'}; wrote {config.out / 'report.md'}", file=sys.stderr)
    return 1 if data["flagged"] or data["replay_flagged"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

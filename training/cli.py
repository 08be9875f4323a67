"""Command line for training: flags and/or a config file -> one TrainConfig -> train()."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from training.config import (
    DATA_SOURCES,
    MONITOR_MODES,
    ConfigError,
    TrainConfig,
    model_defaults,
    read_config_file,
)
from training.data.spec import is_spec_path
from training.data.splits import SPLIT_KINDS

MODEL_CHOICES = ("lr", "fm", "wide_deep", "deepfm", "dcnv2", "din")


def _data_source(value: str) -> str:
    if value in DATA_SOURCES or value.lower().endswith((".yaml", ".yml")):
        return value
    raise argparse.ArgumentTypeError(f"choose from {', '.join(DATA_SOURCES)} or give a dataset spec .yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-train",
        description=(
            "Train a CTR model. Values come from --config (JSON or YAML with TrainConfig keys), "
            "then flags override them. Re-running with the same --out resumes from the last epoch "
            "checkpoint."
        ),
    )
    parser.add_argument("--config", help="JSON/YAML file of training settings")
    parser.add_argument("--out", dest="out_dir", help="output directory (model, contract, metrics, log)")
    parser.add_argument(
        "--data",
        type=_data_source,
        help=f"data source: {', '.join(DATA_SOURCES)} or a dataset spec file (.yaml) (default synthetic)",
    )
    parser.add_argument(
        "--split", choices=SPLIT_KINDS, help="how to cut train/valid/test (movielens default per-user)"
    )
    parser.add_argument("--data-path", help="data directory (synthetic parquet dir, ml-100k dir, Criteo TSV)")
    parser.add_argument("--rows", type=int, help="synthetic data: number of rows to generate")
    parser.add_argument("--data-seed", type=int, help="synthetic data: generator seed")
    parser.add_argument(
        "--history-len",
        type=int,
        help="synthetic/movielens: add each row's last N earlier clicks as the `history` sequence "
        "feature (din needs it; default 0: none)",
    )
    parser.add_argument(
        "--prior-stats",
        action="store_true",
        help="movielens: add the user's and item's counts, like rates and mean ratings from "
        "strictly earlier ratings as user/item features",
    )
    parser.add_argument("--model", choices=MODEL_CHOICES, help="model (default deepfm)")
    parser.add_argument("--model-config", help="JSON object of ModelConfig fields, e.g. '{\"dropout\": 0.1}'")
    parser.add_argument(
        "--epochs", type=int, help="maximum epochs (default 5); raise it to continue a finished run"
    )
    parser.add_argument("--batch-size", type=int, help="training batch size (default 1024; lr: 2**20)")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate (default 1e-3; lr: 0.1)")
    parser.add_argument(
        "--passes", type=int, help="passes over the training data per epoch (default 1; lr: 50)"
    )
    parser.add_argument(
        "--lr-decay",
        type=float,
        help="epoch e trains at --learning-rate * lr_decay ** (e - 1) (default 1: constant)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        default=None,
        help="after training, fit Platt scaling of the best model's logit on validation (kept in "
        "the graph, so the export serves calibrated probabilities; ranking unchanged)",
    )
    parser.add_argument("--seed", type=int, help="model/shuffle seed (default 0)")
    parser.add_argument(
        "--patience",
        type=int,
        help="early stopping: stop after N epochs in a row without gain in --monitor (default 2)",
    )
    parser.add_argument(
        "--monitor",
        choices=sorted(MONITOR_MODES),
        help="validation metric for early stopping and the saved best model (default val_auc; "
        "val_logloss also rewards calibrated probabilities)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--mlflow-uri",
        help="log the run to this MLflow tracking URI (default: MLFLOW_TRACKING_URI; unset: no "
        "tracking), e.g. sqlite:///mlflow.db; a resumed run continues its MLflow run",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge the config file and the flags (flags win) into one validated TrainConfig."""
    values = read_config_file(args.config) if args.config else {}
    for key in (
        "out_dir",
        "data",
        "data_path",
        "model",
        "epochs",
        "batch_size",
        "learning_rate",
        "seed",
        "patience",
        "passes",
        "monitor",
        "lr_decay",
        "calibrate",
    ):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    options = dict(values.get("data_options", {}))
    if args.rows is not None:
        options["num_rows"] = args.rows
    if args.data_seed is not None:
        options["seed"] = args.data_seed
    if args.history_len is not None:
        options["history_len"] = args.history_len
    source = str(values.get("data", "synthetic"))
    if args.prior_stats:
        if source != "movielens":
            raise ConfigError("--prior-stats applies to movielens")
        options["prior_stats"] = True
    if args.split is not None:
        if source != "movielens" and not is_spec_path(source):
            raise ConfigError(f"--split applies to movielens and dataset specs, not {source!r}")
        options["split"] = args.split
    values["data_options"] = options
    if values.get("model") == "din" and not options.get("history_len") and not is_spec_path(source):
        # (a dataset spec declares its history itself: train checks the contract has one)
        raise ConfigError("--model din attends over a history: give --history-len N (synthetic, movielens)")
    if args.model_config:
        try:
            values["model_config"] = json.loads(args.model_config)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--model-config is not valid JSON: {exc}") from exc
    if args.quiet:
        values["verbose"] = 0
    if "out_dir" not in values:
        raise ConfigError("--out (or out_dir in --config) is required")
    return TrainConfig.from_dict({**model_defaults(str(values.get("model", TrainConfig.model))), **values})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"recsys-train: error: {exc}", file=sys.stderr)
        return 2
    from training.data import DataError
    from training.tracking import tracked_run, tracking_uri
    from training.train import check_resume, train

    try:
        check_resume(config)  # a refused resume opens no MLflow run
        uri = tracking_uri(args.mlflow_uri)
        with tracked_run(uri, kind="train", out_dir=Path(config.out_dir), resume=True) as tracker:
            result = train(config, tracker=tracker)
    except (ConfigError, DataError) as exc:  # other settings in --out; unusable data (file, column, row)
        print(f"recsys-train: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"best epoch {result.best_epoch} by {result.monitor}: val AUC {result.best_val_auc:.5f}"
        f"{'' if result.monitor == 'val_auc' else f', {result.monitor} {result.best_value:.5f}'} "
        f"({result.epochs_run} epochs, stopped early: {result.stopped_early}); output in {result.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

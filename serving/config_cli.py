"""``recsys-serving-config``: write TF Serving's configs (``write``), start and stop its container (``up``/``down``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from serving import docker_cli
from serving.tfserving_config import (
    BatchingSettings,
    ModelSettings,
    MonitoringSettings,
    docker_command,
    has_version_labels,
    write_configs,
)


def _model(text: str) -> ModelSettings:
    """Parse NAME=BASE_PATH[,policy=latest|all|specific][,versions=1:2][,num_versions=N][,label=stable:1]."""
    head, *options = text.split(",")
    name, sep, base_path = head.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--model {text!r}: expected NAME=BASE_PATH[,key=value...]")
    values: dict = {"name": name, "base_path": base_path}
    labels: dict[str, int] = {}
    try:
        for option in options:
            key, _, value = option.partition("=")
            if key == "policy":
                values["policy"] = value
            elif key == "num_versions":
                values["num_versions"] = int(value)
            elif key == "versions":
                values["versions"] = tuple(int(v) for v in value.split(":"))
            elif key == "label":
                label, _, version = value.partition(":")
                labels[label] = int(version)
            else:
                raise argparse.ArgumentTypeError(f"--model {text!r}: unknown option {key!r}")
        return ModelSettings(**values, labels=labels)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--model {text!r}: {exc}") from exc


COMMANDS = ("write", "up", "down")


def _add_write_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "write",
        help="write models.config, batching.config and monitoring.config; print the docker run line",
        description=(
            "Write TF Serving's text-proto configs for the official tensorflow/serving image or the "
            "embedded server (both read the same files), and print the matching docker run command. "
            "The batching defaults accept the ranker's largest default Predict (max_batch_size 1000 "
            "with large-batch splitting into 128-row batches); TF Serving refuses a Predict above "
            "max_batch_size, so give the ranker RANKER_SERVING_MAX_BATCH_SIZE equal to it."
        ),
        epilog="example: recsys-serving-config write --out config "
        "--model ctr=/models/ctr,policy=latest,num_versions=2,label=stable:1",
    )
    parser.add_argument("--out", required=True, help="directory to write the configs into")
    parser.add_argument(
        "--model",
        action="append",
        type=_model,
        required=True,
        help="NAME=BASE_PATH as the server sees it, with ,policy= ,num_versions= ,versions=1:2 ,label=NAME:VERSION",
    )
    defaults = BatchingSettings()
    parser.add_argument("--no-batching", action="store_true", help="do not write batching.config")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--batch-timeout-micros", type=int, default=defaults.batch_timeout_micros)
    parser.add_argument("--num-batch-threads", type=int, default=defaults.num_batch_threads)
    parser.add_argument("--max-enqueued-batches", type=int, default=defaults.max_enqueued_batches)
    parser.add_argument(
        "--no-large-batch-splitting",
        action="store_true",
        help="run a Predict as one batch (then max_batch_size is also the largest executed batch)",
    )
    parser.add_argument(
        "--max-execution-batch-size",
        type=int,
        help="with splitting: rows per executed batch (default: 128, or max_batch_size if smaller)",
    )
    parser.add_argument("--no-monitoring", action="store_true", help="do not write monitoring.config")
    parser.add_argument(
        "--models-dir", default="models", help="host folder mounted at /models in the printed command"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-serving-config",
        description=(
            "TF Serving's configs and container: `write` the config files (the default command: "
            "`recsys-serving-config --out ...` means `write --out ...`), `up` starts the official "
            "image (or ours) with them through the Docker SDK and waits until the models are "
            "AVAILABLE, `down` stops it."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{write,up,down}")
    _add_write_parser(commands)
    docker_cli.add_parsers(commands)
    return parser


def _write(args: argparse.Namespace) -> int:
    batching = None
    if not args.no_batching:
        try:
            batching = BatchingSettings(
                max_batch_size=args.max_batch_size,
                batch_timeout_micros=args.batch_timeout_micros,
                num_batch_threads=args.num_batch_threads,
                max_enqueued_batches=args.max_enqueued_batches,
                enable_large_batch_splitting=not args.no_large_batch_splitting,
                max_execution_batch_size=args.max_execution_batch_size,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    monitoring = None if args.no_monitoring else MonitoringSettings()
    try:
        written = write_configs(args.out, args.model, batching, monitoring)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    command = docker_command(
        os.path.abspath(args.models_dir),
        os.path.abspath(args.out),
        batching=batching is not None,
        monitoring=monitoring is not None,
        version_labels=has_version_labels(args.model),
    )
    print(" ".join(shlex.quote(part) for part in command))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "write")  # the command line before subcommands existed
    args = build_parser().parse_args(argv)
    if args.command == "write":
        return _write(args)
    return docker_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())

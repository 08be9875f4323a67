"""``recsys-serving-config``: write models.config, batching and monitoring configs for TF Serving."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from serving.tfserving_config import (
    BatchingSettings,
    ModelSettings,
    MonitoringSettings,
    docker_command,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-serving-config",
        description=(
            "Write TF Serving's text-proto configs (models.config, batching.config, monitoring.config) "
            "for the official tensorflow/serving image or the embedded server (both read the same files), "
            "and print the matching docker run command."
        ),
        epilog="example: recsys-serving-config --out config --model ctr=/models/ctr,policy=latest,num_versions=2,label=stable:1",
    )
    parser.add_argument("--out", required=True, help="directory to write the configs into")
    parser.add_argument(
        "--model",
        action="append",
        type=_model,
        required=True,
        help="NAME=BASE_PATH as the server sees it, with ,policy= ,num_versions= ,versions=1:2 ,label=NAME:VERSION",
    )
    parser.add_argument("--no-batching", action="store_true", help="do not write batching.config")
    parser.add_argument("--max-batch-size", type=int, default=BatchingSettings.max_batch_size)
    parser.add_argument("--batch-timeout-micros", type=int, default=BatchingSettings.batch_timeout_micros)
    parser.add_argument("--num-batch-threads", type=int, default=BatchingSettings.num_batch_threads)
    parser.add_argument("--max-enqueued-batches", type=int, default=BatchingSettings.max_enqueued_batches)
    parser.add_argument("--no-monitoring", action="store_true", help="do not write monitoring.config")
    parser.add_argument(
        "--models-dir", default="models", help="host folder mounted at /models in the printed command"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    batching = None
    if not args.no_batching:
        batching = BatchingSettings(
            max_batch_size=args.max_batch_size,
            batch_timeout_micros=args.batch_timeout_micros,
            num_batch_threads=args.num_batch_threads,
            max_enqueued_batches=args.max_enqueued_batches,
        )
    monitoring = None if args.no_monitoring else MonitoringSettings()
    written = write_configs(args.out, args.model, batching, monitoring)
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    command = docker_command(
        os.path.abspath(args.models_dir),
        os.path.abspath(args.out),
        batching=batching is not None,
        monitoring=monitoring is not None,
    )
    print(" ".join(shlex.quote(part) for part in command))
    return 0


if __name__ == "__main__":
    sys.exit(main())

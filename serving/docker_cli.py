"""``recsys-serving-config up`` / ``down``: the model-server container through ``serving.docker_launcher``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from serving.docker_launcher import DEFAULT_IMAGE, LaunchConfig, LaunchError, down, launch_config, up

DEFAULT_NAME = LaunchConfig.__dataclass_fields__["name"].default


def add_parsers(commands: Any) -> None:
    """Add ``up`` and ``down`` to the ``recsys-serving-config`` subcommands."""
    start = commands.add_parser(
        "up",
        help="start TF Serving (or our image) in Docker and wait until every model is AVAILABLE",
        description=(
            "Start a model-server container with the Docker SDK: the models folder at /models and "
            "the config folder at /config (read-only), 8500/8501 published on --host, TF Serving's "
            "flags for the files present (batching, monitoring, version labels) on the command "
            "line. Polls GET /v1/models/<name> for every model of models.config until one version "
            "is AVAILABLE, printing each change; on failure the container is removed. The "
            "container's log is saved to --log-file."
        ),
        epilog="example: recsys-serving-config up --config-dir docker/config --models-dir runs/docker/models",
    )
    start.add_argument(
        "--config-dir", type=Path, required=True, help="folder written by `write` (models.config ...)"
    )
    start.add_argument(
        "--models-dir", type=Path, required=True, help="host folder of <name>/<version>/ models"
    )
    start.add_argument(
        "--image", default=DEFAULT_IMAGE, help="tensorflow/serving:<tag> or recsys/model-server:<tag>"
    )
    start.add_argument("--name", default=DEFAULT_NAME, help="container name (and launch label)")
    start.add_argument("--host", default="127.0.0.1", help="host address the ports are published on")
    start.add_argument("--grpc-port", type=int, default=8500, help="host port for gRPC (container 8500)")
    start.add_argument("--rest-port", type=int, default=8501, help="host port for REST (container 8501)")
    start.add_argument("--network", help="Docker network to join (others there reach it by --name)")
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for AVAILABLE")
    start.add_argument("--log-file", type=Path, help="save the container log here (default: <name>.log)")
    start.add_argument(
        "--flag",
        action="append",
        default=[],
        dest="extra_flags",
        help="one more tensorflow_model_server flag, e.g. --flag=--tensorflow_intra_op_parallelism=2",
    )
    stop = commands.add_parser(
        "down",
        help="stop and remove the container started by `up`",
        description="Stop and remove the containers `up` launched under --name (found by label), "
        "saving their log to --log-file first.",
    )
    stop.add_argument("--name", default=DEFAULT_NAME, help="the name given to `up`")
    stop.add_argument("--log-file", type=Path, help="save the container log here (default: <name>.log)")
    stop.add_argument("--timeout", type=int, default=10, help="seconds for a graceful stop before SIGKILL")


def docker_client() -> Any:
    """``docker.from_env()``, with an install hint when the SDK is missing."""
    try:
        import docker
    except ImportError as exc:
        raise LaunchError("the Docker SDK is not installed: pip install 'tfserving-recsys[docker]'") from exc
    return docker.from_env()


def _log_path(args: argparse.Namespace) -> Path:
    return args.log_file if args.log_file is not None else Path(f"{args.name}.log")


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    """The launch config ``up``'s flags describe."""
    return launch_config(
        args.config_dir,
        args.models_dir,
        extra_flags=args.extra_flags,
        image=args.image,
        name=args.name,
        host=args.host,
        grpc_port=args.grpc_port,
        rest_port=args.rest_port,
        network=args.network,
        ready_timeout_s=args.timeout,
        log_path=_log_path(args).resolve(),
    )


def run(args: argparse.Namespace, client: Any = None, **wait: Any) -> int:
    """Run ``up`` or ``down``; errors are printed as one message and exit status 1.

    Args:
        client: a Docker client (default ``docker.from_env()``).
        wait: options of ``wait_available`` (tests inject ``fetch``, ``clock`` and ``sleep``).
    """
    try:
        if args.command == "up":
            config = config_from_args(args)
            client = client if client is not None else docker_client()
            print(f"starting {config.image} as {config.name}: " + " ".join(config.flags))
            up(client, config, **wait)
            print(
                f"{config.name} ready: gRPC {config.host}:{config.grpc_port}, REST {config.rest_url}; "
                f"log saved to {config.log_path}"
            )
        else:
            client = client if client is not None else docker_client()
            removed = down(client, args.name, log_path=_log_path(args), stop_timeout_s=args.timeout)
            print(
                f"removed {', '.join(removed)}; log saved to {_log_path(args)}"
                if removed
                else f"no container {args.name}"
            )
    except (LaunchError, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    except Exception as exc:  # docker.errors.DockerException: daemon down, image missing, name in use
        if type(exc).__module__.startswith("docker"):
            print(f"error: docker: {exc}")
            return 1
        raise
    return 0

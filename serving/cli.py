"""``recsys-model-server`` / ``python -m serving.model_server``: tensorflow_model_server's command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from serving.model_server.config import ConfigError, ServerOptions
from serving.model_server.process_defaults import POLLER_EXPERIMENTS, SMALL_MACHINE_CPUS

# grpc's core reads GRPC_EXPERIMENTS once, when grpc is first imported, so this module
# imports nothing that imports grpc, and main() sets it first, on small machines only
# (process_defaults.py says why and what was measured). A value already set is left as it is.
EPILOG = (
    f"Environment: GRPC_EXPERIMENTS, when unset and the process may use at most {SMALL_MACHINE_CPUS} CPUs, "
    f"is set to {POLLER_EXPERIMENTS} so that the gRPC serving threads read and write the sockets "
    "themselves (docs/ARCHITECTURE.md)."
)


def _parser() -> argparse.ArgumentParser:
    from serving.model_server.flags import build_parser

    return build_parser(EPILOG)


def parse_options(argv: Sequence[str]) -> ServerOptions:
    """Flags -> ServerOptions.

    Raises:
        ConfigError: an unknown flag, a malformed value, or an inconsistent combination.
    """
    parser = _parser()
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        name = unknown[0].split("=", 1)[0].lstrip("-")
        raise ConfigError(f"unknown command line flag '{name}'")
    values = vars(args)
    if values["version"]:
        return ServerOptions(**{**values, "model_base_path": values["model_base_path"] or "-"})
    if values["port"] == 0 and not values["grpc_socket_path"]:
        # server.cc refuses this; ServerOptions(port=0) in Python binds a free port instead.
        raise ConfigError(
            "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set."
        )
    return ServerOptions(**values)


def version_text() -> str:
    """What ``--version`` prints: TF Serving's two lines, naming this server and TensorFlow."""
    from importlib import metadata

    import tensorflow as tf

    try:
        ours = metadata.version("tfserving-recsys")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    return f"TensorFlow ModelServer: {ours} (embedded)\nTensorFlow Library: {tf.__version__}"


class _ArgumentError(Exception):
    pass


def main(argv: Sequence[str] | None = None, *, stop_event: threading.Event | None = None) -> int:
    """Run the server until SIGINT/SIGTERM (or ``stop_event``); returns the exit status.

    Exit status 1 with a message on stderr for bad flags, bad config files, and models that do
    not become available (TF Serving's "Failed to start server. Error: ..." text).
    """
    from serving.model_server.config import schedulable_cpus
    from serving.model_server.process_defaults import grpc_experiments_default

    experiments = grpc_experiments_default(schedulable_cpus())
    if experiments is not None and "grpc" not in sys.modules:  # else grpc has read it already
        os.environ.setdefault("GRPC_EXPERIMENTS", experiments)
    from serving.model_server.errors import ServingError
    from serving.model_server.server import ModelServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s] %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()

    def fail_parse(message: str) -> Any:
        raise _ArgumentError(message)

    parser.error = fail_parse  # type: ignore[method-assign]
    try:
        options = parse_options(argv) if not any(a in ("-h", "--help") for a in argv) else None
    except (ConfigError, _ArgumentError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        print(parser.format_usage(), file=sys.stderr)
        return 1
    except SystemExit as exc:  # argparse rejected a value
        return int(exc.code or 1)
    if options is None:
        parser.print_help()
        return 0
    if options.version:
        print(version_text())
        return 0
    for name in options.inert_flags_in_use():
        from serving.model_server.flags import INERT

        logging.getLogger("serving.model_server").warning(
            "--%s is accepted for compatibility with tensorflow_model_server and ignored: %s",
            name,
            INERT[name],
        )
    try:
        server = ModelServer(options, serve_tcp=options.port != 0).start()
    except ConfigError as exc:
        print(f"Failed to start server. Error: {exc}", file=sys.stderr)
        return 1
    except ServingError as exc:
        print(f"Failed to start server. Error: {exc.code.name}: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"Failed to start server. Error: {exc}", file=sys.stderr)
        return 1
    event = stop_event or threading.Event()
    if stop_event is None and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: event.set())
    where = [f"{options.bind_address}:{server.grpc_port}"] if options.port != 0 else []
    where += [f"unix:{options.grpc_socket_path}"] if options.grpc_socket_path else []
    print(
        f"Serving gRPC on {' and '.join(where)}"
        + (f", REST on {options.bind_address}:{server.rest_port}" if server.rest_port else ""),
        flush=True,
    )
    try:
        event.wait()
    finally:
        server.stop()
    return 0

"""``recsys-model-server`` / ``python -m serving.model_server``: tensorflow_model_server's command line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from serving.model_server.config import ConfigError, ServerOptions

# grpc's core reads GRPC_EXPERIMENTS once, when grpc is first imported, so this module
# imports nothing that imports grpc, and main() sets it first. Without it, grpc's event
# engine threads read and write the sockets and hand each event over to the thread polling
# the completion queue; with it, that polling thread (the inline server's, which then runs
# the handler) does the socket I/O itself: no thread hop. Measured with
# benchmarks/bench_model_server.py (32 clients x 16 rows): batching on 5,610-5,750 ->
# 5,870-5,970 req/s, off 2,890-2,970 -> 3,000-3,010; gRPC latency unchanged (1.45-1.48x).
# A GRPC_EXPERIMENTS already set is left as it is.
POLLER_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensorflow_model_server",
        description="Embedded TensorFlow Serving-compatible model server (same flags as tensorflow_model_server).",
        epilog=f"Environment: GRPC_EXPERIMENTS, when unset, is set to {POLLER_EXPERIMENTS} so that the "
        "gRPC serving threads read and write the sockets themselves (docs/ARCHITECTURE.md).",
        allow_abbrev=False,
    )
    defaults = {f.name: f.default for f in dataclasses.fields(ServerOptions)}
    helps = {
        "port": "Port to listen on for gRPC API",
        "rest_api_port": "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be exported.",
        "rest_api_num_threads": "Number of threads for HTTP/REST API processing.",
        "rest_api_timeout_in_ms": "Timeout for HTTP/REST API calls.",
        "bind_address": "Address the gRPC and REST servers bind to (not a tensorflow_model_server flag).",
        "model_name": "name of model (ignored if --model_config_file flag is set)",
        "model_base_path": "path to export (ignored if --model_config_file flag is set, otherwise required)",
        "model_config_file": "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file name.",
        "model_config_file_poll_wait_seconds": "Interval in seconds between each poll of the model config file (0: no polling).",
        "file_system_poll_wait_seconds": "Interval in seconds between each poll of the filesystem for new model versions.",
        "enable_batching": "enable batching",
        "batching_parameters_file": "If non-empty, read an ascii BatchingParameters protobuf from the supplied file name.",
        "monitoring_config_file": "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name.",
        "enable_model_warmup": "Enables model warmup from assets.extra/tf_serving_warmup_requests.",
        "num_request_iterations_for_warmup": "Number of times a warmup request is replayed.",
        "grpc_channel_arguments": "A comma separated list of arguments to be passed to the grpc server. (e.g. grpc.max_connection_age_ms=2000)",
        "grpc_max_threads": "Max grpc server threads to handle grpc messages.",
        "enable_signature_method_name_check": "Enable method_name check for SignatureDef.",
        "allow_version_labels_for_unavailable_models": "If true, allows assigning unused version labels to models that are not available yet.",
        "tensorflow_session_parallelism": "Number of threads to use for running a Tensorflow session. Auto-configured by default.",
        "tensorflow_intra_op_parallelism": "Number of threads to use to parallelize the execution of an individual op. Auto-configured by default. Applies only with --tensorflow_inter_op_parallelism > 0.",
        "tensorflow_inter_op_parallelism": "Controls the number of operators that can be executed simultaneously. Auto-configured by default. Applies only with --tensorflow_intra_op_parallelism > 0; -1 runs each model's ops in the calling thread.",
        "pin_python_threads": "Run the server's Python threads (gRPC, REST, batching) on one CPU of the process's set, TensorFlow's pools on all (not a tensorflow_model_server flag; Linux).",
    }
    for name, default in defaults.items():
        flag = f"--{name}"
        if isinstance(default, bool):
            parser.add_argument(flag, type=_bool, nargs="?", const=True, default=default, help=helps[name])
        else:
            parser.add_argument(flag, type=type(default), default=default, help=helps[name])
    return parser


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
    return ServerOptions(**vars(args))


class _ArgumentError(Exception):
    pass


def main(argv: Sequence[str] | None = None, *, stop_event: threading.Event | None = None) -> int:
    """Run the server until SIGINT/SIGTERM (or ``stop_event``); returns the exit status.

    Exit status 1 with a message on stderr for bad flags, bad config files, and models that do
    not become available (TF Serving's "Failed to start server. Error: ..." text).
    """
    if "grpc" not in sys.modules:  # else grpc's core has read its settings already
        os.environ.setdefault("GRPC_EXPERIMENTS", POLLER_EXPERIMENTS)
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
    try:
        server = ModelServer(options).start()
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
    print(
        f"Serving gRPC on {options.bind_address}:{server.grpc_port}"
        + (f", REST on {options.bind_address}:{server.rest_port}" if server.rest_port else ""),
        flush=True,
    )
    try:
        event.wait()
    finally:
        server.stop()
    return 0

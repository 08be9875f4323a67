"""tensorflow_model_server's flags as an argparse parser: which are implemented, which are inert."""

from __future__ import annotations

import argparse
import dataclasses

from serving.model_server.config import ServerOptions

# Flags of model_servers/main.cc that cannot mean anything in this server: accepted so that a
# TF Serving command line runs unchanged, with one start-up warning naming each one set.
INERT: dict[str, str] = {
    "num_unload_threads": "unloads run at once on the manager's thread",
    "flush_filesystem_caches": "no TensorFlow filesystem cache to flush from Python",
    "enable_per_model_batching_parameters": "per-model batching_params.pbtxt is not read",
    "use_alts_credentials": "no Google ALTS outside Google Cloud",
    "ssl_config_file": "gRPC is served without TLS; terminate TLS in front of the server",
    "platform_config_file": "only the TensorFlow platform is served",
    "per_process_gpu_memory_fraction": "no GPU",
    "remove_unused_fields_from_bundle_metagraph": "the Python loader keeps the MetaGraphDef it needs",
    "xla_cpu_compilation_enabled": "XLA JIT follows TensorFlow's own default",
    "xla_gpu_compilation_enabled": "no GPU",
    "thread_pool_factory_config_file": "TensorFlow's own thread pools are used",
    "mixed_precision": "models run in the precision they were saved in",
    "skip_initialize_tpu": "no TPU",
    "enable_grpc_healthcheck_service": "grpc.health.v1 is not served",
    "enable_serialization_as_tensor_content": "Predict answers typed *_val fields",
}

_HELP: dict[str, str] = {
    "port": "TCP port to listen on for gRPC API (0 with --grpc_socket_path: Unix socket only).",
    "grpc_socket_path": "If non-empty, also listen to a UNIX socket for gRPC API on the given path.",
    "rest_api_port": "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be "
    "exported. This port must be different than the one specified in --port.",
    "rest_api_num_threads": "Number of threads for HTTP/REST API processing (default 4 x CPUs).",
    "rest_api_timeout_in_ms": "Timeout for HTTP/REST API calls.",
    "rest_api_enable_cors_support": "Enable CORS headers in response.",
    "bind_address": "Address the gRPC and REST servers bind to (ours; TF Serving binds all "
    "interfaces; 0.0.0.0 does the same, as our images pass).",
    "model_name": "name of model (ignored if --model_config_file flag is set)",
    "model_base_path": "path to export (ignored if --model_config_file flag is set, otherwise required)",
    "model_config_file": "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file "
    "name, and serve the models in that file (--model_name, --model_base_path are then ignored).",
    "model_config_file_poll_wait_seconds": "Interval in seconds between each poll of the model config "
    "file (0: read once).",
    "file_system_poll_wait_seconds": "Interval in seconds between each poll of the filesystem for new "
    "model versions (0: poll once).",
    "num_load_threads": "Threads loading servables at once (0: one at a time on the manager's thread).",
    "max_num_load_retries": "Retries of a failed load before giving up (0: a load is attempted once).",
    "load_retry_interval_micros": "Interval in microseconds between load retries (negative: no wait).",
    "enable_batching": "enable batching",
    "batching_parameters_file": "If non-empty, read an ascii BatchingParameters protobuf from the "
    "supplied file name and use the contained values instead of the defaults.",
    "monitoring_config_file": "If non-empty, read an ascii MonitoringConfig protobuf from the supplied "
    "file name.",
    "enable_model_warmup": "Enables model warmup from assets.extra/tf_serving_warmup_requests.",
    "num_request_iterations_for_warmup": "Number of times a warmup request is replayed (used if > 0).",
    "grpc_channel_arguments": "A comma separated list of arguments to be passed to the grpc server. "
    "(e.g. grpc.max_connection_age_ms=2000)",
    "grpc_max_threads": "Max grpc server threads to handle grpc messages (default 4 x CPUs).",
    "enable_signature_method_name_check": "Enable method_name check for SignatureDef.",
    "allow_version_labels_for_unavailable_models": "If true, allows assigning unused version labels "
    "to models that are not available yet.",
    "saved_model_tags": "Comma-separated set of tags of the meta graph to load from SavedModel.",
    "prefer_tflite_model": "Serve model.tflite from the version directory, when present, instead of "
    "saved_model.pb.",
    "num_tflite_pools": "Number of TF Lite interpreter pools per TF Lite model (default: CPUs).",
    "num_tflite_interpreters_per_pool": "Number of TF Lite interpreters per pool.",
    "enable_profiler": "Serve tensorflow.ProfilerService on the gRPC port.",
    "tensorflow_session_parallelism": "Number of threads to use for running a Tensorflow session. "
    "Auto-configured by default.",
    "tensorflow_session_config_file": "If non-empty, read an ascii ConfigProto from the supplied file; "
    "the parallelism flags override its thread settings.",
    "tensorflow_intra_op_parallelism": "Threads to parallelize the execution of an individual op "
    "(with the inter-op flag: used when either is > 0).",
    "tensorflow_inter_op_parallelism": "Operators executed simultaneously; -1 with a positive intra-op "
    "value runs each model's ops in the calling thread.",
    "version": "Display version",
    "grpc_face": "gRPC server implementation (ours): inline (grpc's core completion queue, handlers "
    "on the polling thread), stock (grpc.server) or auto (inline when its start-up self-test passes).",
    "pin_python_threads": "Run the server's Python threads on one CPU, TensorFlow's pools on the rest "
    "(ours; Linux): true, false, or auto (only on machines with at most 4 CPUs, where it was measured).",
    "max_request_tensor_bytes": "Most bytes a Predict's, Classify's or Regress's tensors may decode to "
    "(ours): elements x dtype size, strings by their bytes plus 8 each; checked before allocating, "
    "answered INVALID_ARGUMENT (REST 400) naming the input.",
    "model_config_roots": "Comma-separated folders (or URI prefixes) under which "
    "HandleReloadConfigRequest may load base paths, besides those the server started with (ours; "
    "other paths are PERMISSION_DENIED: a SavedModel runs code when it loads). The polled "
    "--model_config_file is not restricted.",
}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"true", "1", "yes", "t", "y"}:
        return True
    if lowered in {"false", "0", "no", "f", "n"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(epilog: str) -> argparse.ArgumentParser:
    """An argparse parser with every ServerOptions field as a ``--name=value`` flag.

    Every flag of TF Serving's main.cc is there; ``--help`` marks the inert ones.
    """
    parser = argparse.ArgumentParser(
        prog="tensorflow_model_server",
        description="Embedded TensorFlow Serving-compatible model server (same flags as "
        "tensorflow_model_server). Flags marked [inert] are accepted and ignored, with a warning.",
        epilog=epilog,
        allow_abbrev=False,
    )
    defaults = ServerOptions(model_base_path="/")
    for field in dataclasses.fields(ServerOptions):
        default = getattr(defaults, field.name)
        flag = f"--{field.name}"
        if field.name in INERT:
            text = f"[inert: {INERT[field.name]}]"
        else:
            text = _HELP[field.name]
        if field.name == "model_base_path":
            default = ""
        if isinstance(default, bool):
            parser.add_argument(flag, type=_bool, nargs="?", const=True, default=default, help=text)
        else:
            parser.add_argument(
                flag, type=type(default), default=default, help=f"{text} (default: %(default)s)"
            )
    return parser

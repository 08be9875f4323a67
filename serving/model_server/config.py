"""Server options (tensorflow_model_server's flags) and the text-proto config files they name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigError(ValueError):
    """A config file is missing or does not parse; the message names the file and the proto."""


def schedulable_cpus() -> int:
    """CPUs this process may run on (TF Serving's ``port::NumSchedulableCPUs``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _four_per_cpu() -> int:
    return 4 * schedulable_cpus()


@dataclass(frozen=True)
class ServerOptions:
    """Every tensorflow_model_server flag (model_servers/main.cc, server.h), with its default.

    Attributes mirror the flags of the same name. The flags that cannot mean anything in this
    server (GPU, TPU, XLA, ALTS, filesystem caches, ...) are accepted and kept here so that a
    TF Serving command line runs unchanged; :meth:`inert_flags_in_use` names those set to a
    non-default value, which the command line warns about once at start-up (see
    ``serving.model_server.flags``). ``bind_address``, ``grpc_face``, ``pin_python_threads``,
    ``max_request_tensor_bytes`` and ``model_config_roots`` are ours (TF Serving always binds
    all interfaces, has one gRPC server, no GIL, no decoded-size budget and reloads any path).
    ``bind_address`` defaults to 127.0.0.1, the one deliberate difference from
    tensorflow_model_server: the API is unauthenticated, and HandleReloadConfigRequest loads
    SavedModels, which run code as they load (our images pass ``--bind_address=0.0.0.0``).
    """

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_num_threads: int = field(default_factory=_four_per_cpu)
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    bind_address: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    flush_filesystem_caches: bool = True
    enable_batching: bool = False
    enable_per_model_batching_parameters: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = field(default_factory=_four_per_cpu)
    enable_signature_method_name_check: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    saved_model_tags: str = "serve"
    prefer_tflite_model: bool = False
    num_tflite_pools: int = field(default_factory=schedulable_cpus)
    num_tflite_interpreters_per_pool: int = 1
    enable_profiler: bool = True
    tensorflow_session_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    use_alts_credentials: bool = False
    ssl_config_file: str = ""
    platform_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    remove_unused_fields_from_bundle_metagraph: bool = True
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    skip_initialize_tpu: bool = False
    enable_grpc_healthcheck_service: bool = False
    enable_serialization_as_tensor_content: bool = False
    version: bool = False
    grpc_face: str = "auto"
    pin_python_threads: str = "auto"
    # 64 MiB: 16 Mi float32 values, far above the ranker's largest Predict (1,000 rows x ~20
    # features) and the benchmarks' 500-row requests (tensor_limits.py says why it exists).
    max_request_tensor_bytes: int = 64 * 2**20
    model_config_roots: str = ""

    def __post_init__(self) -> None:
        # server.cc, Server::BuildAndStart: the same checks, codes and texts.
        if self.use_alts_credentials and self.ssl_config_file:
            raise ConfigError("Either use_alts_credentials must be false or ssl_config_file must be empty.")
        if not self.model_base_path and not self.model_config_file:
            raise ConfigError(
                "Both server_options.model_base_path and server_options.model_config_file are empty!"
            )
        if self.batching_parameters_file and not self.enable_batching:
            raise ConfigError(
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true."
            )
        for name in ("port", "rest_api_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ConfigError(f"--{name}={value} is not a port number (0..65535)")
        if (
            self.tensorflow_intra_op_parallelism > 0
            and self.tensorflow_inter_op_parallelism > 0
            and self.tensorflow_session_parallelism > 0
        ):
            raise ConfigError(
                "Either configure server_options.tensorflow_session_parallelism or "
                "(server_options.tensorflow_intra_op_parallelism, "
                "server_options.tensorflow_inter_op_parallelism) separately. "
                "You cannot configure all."
            )
        # TensorFlow aborts the process on a negative intra-op pool size; say so instead.
        for name in ("tensorflow_session_parallelism", "tensorflow_intra_op_parallelism"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"--{name}={getattr(self, name)} must be >= 0 (a negative value only makes "
                    "sense for --tensorflow_inter_op_parallelism)"
                )
        for name in (
            "rest_api_num_threads",
            "grpc_max_threads",
            "num_tflite_pools",
            "num_tflite_interpreters_per_pool",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name}={getattr(self, name)} must be positive")
        for name in ("num_load_threads", "num_unload_threads", "max_num_load_retries"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name}={getattr(self, name)} must be >= 0")
        if self.max_request_tensor_bytes <= 0:
            raise ConfigError(f"--max_request_tensor_bytes={self.max_request_tensor_bytes} must be positive")
        if any(_is_relative(root) for root in self.model_config_root_list):
            raise ConfigError(
                f"--model_config_roots={self.model_config_roots} must list absolute paths or URIs"
            )
        if self.grpc_face not in ("auto", "inline", "stock"):
            raise ConfigError(f"--grpc_face={self.grpc_face} must be one of auto, inline, stock")
        if self.pin_python_threads not in ("auto", "true", "false"):
            raise ConfigError(
                f"--pin_python_threads={self.pin_python_threads} must be one of auto, true, false"
            )

    def inert_flags_in_use(self) -> list[str]:
        """The accepted-but-inert flags (``flags.INERT``) set to a value other than TF's default."""
        from serving.model_server.flags import INERT

        defaults = ServerOptions(model_base_path="/")
        return [
            f.name
            for f in fields(self)
            if f.name in INERT and getattr(self, f.name) != getattr(defaults, f.name)
        ]

    @property
    def model_config_root_list(self) -> tuple[str, ...]:
        """``--model_config_roots`` split on commas, empty entries dropped."""
        return tuple(root for root in self.model_config_roots.split(",") if root)

    @property
    def saved_model_tag_set(self) -> tuple[str, ...]:
        """``--saved_model_tags`` split on commas, as server.cc splits it."""
        return tuple(self.saved_model_tags.split(","))

    def session_config(self) -> Any:
        """The ``ConfigProto`` every model's Session gets, as server.cc builds it.

        ``--tensorflow_session_config_file`` is read first; then the pair
        ``--tensorflow_intra_op_parallelism``/``--tensorflow_inter_op_parallelism`` applies when
        either is positive, otherwise ``--tensorflow_session_parallelism`` sets both (0 lets
        TensorFlow choose). A negative inter-op value with a positive intra-op one is
        TensorFlow's "run every op in the caller's thread", which saves thread hand-offs on
        small CTR graphs (~0.1 ms of a 500-row Predict, measured in
        benchmarks/bench_model_server.py). None when everything is left to TensorFlow.

        Raises:
            ConfigError: the session config file is unreadable or does not parse.
        """
        from tensorflow.core.protobuf import config_pb2

        config = config_pb2.ConfigProto()
        if self.tensorflow_session_config_file:
            text = _read(self.tensorflow_session_config_file, "session config file")
            _parse(text, config, self.tensorflow_session_config_file)
        if self.tensorflow_intra_op_parallelism > 0 or self.tensorflow_inter_op_parallelism > 0:
            intra, inter = self.tensorflow_intra_op_parallelism, self.tensorflow_inter_op_parallelism
        else:
            intra = inter = self.tensorflow_session_parallelism
        if intra or inter or not self.tensorflow_session_config_file:
            config.intra_op_parallelism_threads = intra
            config.inter_op_parallelism_threads = inter
        if config.ByteSize() == 0:
            return None
        return config


def _is_relative(path: str) -> bool:
    return "://" not in path and not path.startswith("/")


def _parse(text: str, message: Any, source: str) -> Any:
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(
            f"Error parsing text-format {message.DESCRIPTOR.full_name}: {exc} (file {source})"
        ) from None


def _read(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read {what} {path}: {exc.strerror}") from None


def parse_model_server_config(text: str, source: str = "<text>") -> Any:
    """A ``tensorflow.serving.ModelServerConfig`` from text-format ``text``.

    Raises:
        ConfigError: "Error parsing text-format tensorflow.serving.ModelServerConfig: ...".
    """
    from tensorflow_serving.config import model_server_config_pb2

    return _parse(text, model_server_config_pb2.ModelServerConfig(), source)


def read_model_server_config(path: str | Path) -> Any:
    """Parse the --model_config_file."""
    return parse_model_server_config(_read(path, "model config file"), str(path))


def parse_batching_parameters(text: str, source: str = "<text>") -> Any:
    """A ``tensorflow.serving.BatchingParameters`` from text-format ``text``.

    Raises:
        ConfigError: the text does not parse, or its values are out of range.
    """
    from serving.model_server.batching_options import BatchingOptions
    from serving.model_server.protos import server_configs_pb2

    params = _parse(text, server_configs_pb2.BatchingParameters(), source)
    try:
        BatchingOptions.from_proto(params)  # the model server's checks, with TF Serving's texts
    except ValueError as exc:
        raise ConfigError(f"{exc} ({source})") from None
    return params


def read_batching_parameters(path: str | Path) -> Any:
    """Parse the --batching_parameters_file."""
    return parse_batching_parameters(_read(path, "batching parameters file"), str(path))


def parse_monitoring_config(text: str, source: str = "<text>") -> Any:
    """A ``tensorflow.serving.MonitoringConfig`` from text-format ``text``."""
    from serving.model_server.protos import server_configs_pb2

    return _parse(text, server_configs_pb2.MonitoringConfig(), source)


def read_monitoring_config(path: str | Path) -> Any:
    """Parse the --monitoring_config_file."""
    return parse_monitoring_config(_read(path, "monitoring config file"), str(path))


def prometheus_path(monitoring: Any | None) -> str | None:
    """The metrics path a MonitoringConfig enables, or None when Prometheus is off."""
    if monitoring is None or not monitoring.prometheus_config.enable:
        return None
    return monitoring.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


def single_model_config(name: str, base_path: str) -> Any:
    """The ModelServerConfig that --model_name/--model_base_path stand for."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = base_path
    entry.model_platform = "tensorflow"
    return config


def initial_model_config(options: ServerOptions) -> Any:
    """The model config the server starts with, from either flag form.

    Raises:
        ConfigError: the config file is unreadable or unparsable.
    """
    if options.model_config_file:
        return read_model_server_config(options.model_config_file)
    return single_model_config(options.model_name, options.model_base_path)

"""Server options (tensorflow_model_server's flags) and the text-proto config files they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ConfigError(ValueError):
    """A config file is missing or does not parse; the message names the file and the proto."""


@dataclass(frozen=True)
class ServerOptions:
    """Every tensorflow_model_server flag the embedded server honours, with its defaults.

    Attributes mirror the flags of the same name (model_servers/main.cc); ``bind_address`` and
    ``pin_python_threads`` are ours (TF Serving always binds all interfaces, and has no GIL).
    """

    port: int = 8500
    rest_api_port: int = 0
    rest_api_num_threads: int = 16
    rest_api_timeout_in_ms: int = 30000
    bind_address: str = "0.0.0.0"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = 16
    enable_signature_method_name_check: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    pin_python_threads: bool = True

    def __post_init__(self) -> None:
        if not self.model_base_path and not self.model_config_file:
            raise ConfigError("Both --model_base_path and --model_config_file are empty; set one of them.")
        if self.model_base_path and self.model_config_file:
            raise ConfigError("Use --model_base_path or --model_config_file, not both.")
        for name in ("port", "rest_api_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ConfigError(f"--{name}={value} is not a port number (0..65535)")
        if self.port == self.rest_api_port and self.port != 0:
            raise ConfigError(f"--port and --rest_api_port must differ (both {self.port})")
        if (
            self.tensorflow_intra_op_parallelism > 0
            and self.tensorflow_inter_op_parallelism > 0
            and self.tensorflow_session_parallelism > 0
        ):
            raise ConfigError(
                "Either configure server_options.tensorflow_session_parallelism or "
                "(server_options.tensorflow_intra_op_parallelism, "
                "server_options.tensorflow_inter_op_parallelism). Both configs can not be set "
                "at the same time."
            )
        # TensorFlow aborts the process on a negative intra-op pool size; say so instead.
        for name in ("tensorflow_session_parallelism", "tensorflow_intra_op_parallelism"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"--{name}={getattr(self, name)} must be >= 0 (a negative value only makes "
                    "sense for --tensorflow_inter_op_parallelism)"
                )

    def session_config(self) -> Any:
        """The ``ConfigProto`` every model's Session gets, as tensorflow_model_server builds it.

        The intra/inter pair applies when intra > 0 and inter != 0; otherwise
        ``--tensorflow_session_parallelism`` sets both (0 lets TensorFlow choose). **Decision:**
        tensorflow_model_server applies the pair only when both are positive; we also accept
        a negative inter-op value, TensorFlow's "run every op in the caller's thread", which
        saves thread hand-offs on small CTR graphs (~0.1 ms of a 500-row Predict, measured
        in benchmarks/bench_model_server.py). None when everything is left to TensorFlow.
        """
        from tensorflow.core.protobuf import config_pb2

        if self.tensorflow_intra_op_parallelism > 0 and self.tensorflow_inter_op_parallelism != 0:
            intra, inter = self.tensorflow_intra_op_parallelism, self.tensorflow_inter_op_parallelism
        else:
            intra = inter = self.tensorflow_session_parallelism
        if intra == 0 and inter == 0:
            return None
        return config_pb2.ConfigProto(intra_op_parallelism_threads=intra, inter_op_parallelism_threads=inter)


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
    from serving.model_server.protos import server_configs_pb2

    params = _parse(text, server_configs_pb2.BatchingParameters(), source)
    sizes = list(params.allowed_batch_sizes)
    if sizes:
        if sizes != sorted(set(sizes)) or sizes[0] <= 0:
            raise ConfigError(f"allowed_batch_sizes must be positive and increasing, got {sizes} ({source})")
        if params.HasField("max_batch_size") and sizes[-1] != params.max_batch_size.value:
            raise ConfigError(
                f"The last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{sizes[-1]}; expected {params.max_batch_size.value} ({source})"
            )
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if params.HasField(name) and getattr(params, name).value <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(params, name).value} ({source})")
    if params.HasField("batch_timeout_micros") and params.batch_timeout_micros.value < 0:
        raise ConfigError(f"batch_timeout_micros must be >= 0 ({source})")
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

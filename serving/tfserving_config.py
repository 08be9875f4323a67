"""Generate the text-proto config files tensorflow/serving (and the embedded server) read.

The same three files drive the official image and ``python -m serving.model_server``:

    docker run --rm -p 8500:8500 -p 8501:8501 \\
      -v "$PWD/models:/models" -v "$PWD/config:/config" tensorflow/serving:2.21.0 \\
      --model_config_file=/config/models.config \\
      --model_config_file_poll_wait_seconds=60 \\
      --enable_batching=true --batching_parameters_file=/config/batching.config \\
      --monitoring_config_file=/config/monitoring.config

(``docker_command`` builds this line from the settings; ``serving.docker_launcher`` starts it
through the Docker SDK.) ``BatchingSettings`` defaults accept the ranker's largest Predict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recommender_client.service.settings import DEFAULT_PREDICT_CHUNK_SIZE
from serving.model_server.config import DEFAULT_PROMETHEUS_PATH, parse_batching_parameters
from training.atomic_files import atomic_write_text

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
DEFAULT_EXECUTION_BATCH_SIZE = 128


@dataclass(frozen=True)
class ModelSettings:
    """One served model.

    Attributes:
        name: the model name clients use.
        base_path: the directory of numeric version directories (as the server sees it).
        policy: ``latest`` (keep ``num_versions``), ``all`` or ``specific`` (``versions``).
        num_versions: for ``latest``.
        versions: for ``specific``.
        labels: version labels (``{"stable": 1, "canary": 2}``).
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-." for c in self.name):
            raise ValueError(f"model name {self.name!r} must be non-empty [A-Za-z0-9_.-]")
        if not self.base_path:
            raise ValueError(f"model {self.name}: base_path is empty")
        if self.policy not in ("latest", "all", "specific"):
            raise ValueError(f"model {self.name}: policy {self.policy!r} is not latest, all or specific")
        if self.policy == "latest" and self.num_versions < 1:
            raise ValueError(f"model {self.name}: num_versions must be >= 1")
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model {self.name}: the specific policy needs versions")


@dataclass(frozen=True)
class BatchingSettings:
    """Server-side batching (BatchingParameters), sized for the ranker's largest Predict.

    TF Serving refuses a task above ``max_batch_size`` ("Task size N is larger than maximum
    input batch size M"), with or without splitting. **Decision:** large-batch splitting is on,
    with ``max_batch_size`` the ranker's default ``predict_chunk_size`` (1000, so a default
    ranker is accepted whatever its ``max_candidates``) and batches executed at most
    ``max_execution_batch_size`` (128) rows. Raising ``max_batch_size`` alone would let one
    batch grow to 1000 rows, so many small Predicts would wait behind a big one and be run
    together at its cost; splitting keeps the executed batches as small as before and cuts a
    500-row Predict into pieces that fill the open batch first.

    ``allowed_batch_sizes`` stays empty (no padding; our signatures take ``[None]``). When given,
    the model server's rule holds with or without splitting: the last entry equals
    ``max_batch_size`` (``WrapSessionForBatching``, checked by :func:`batching_parameters`).

    Attributes:
        max_execution_batch_size: only with splitting; None means 128, or ``max_batch_size``
            when that is smaller (TF requires max_batch_size >= max_execution_batch_size).
    """

    max_batch_size: int = DEFAULT_PREDICT_CHUNK_SIZE
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = True
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        if not self.enable_large_batch_splitting:
            if self.max_execution_batch_size is not None:
                raise ValueError("max_execution_batch_size only applies with enable_large_batch_splitting")
            return
        if self.max_execution_batch_size is None:
            object.__setattr__(
                self, "max_execution_batch_size", min(DEFAULT_EXECUTION_BATCH_SIZE, self.max_batch_size)
            )
        assert self.max_execution_batch_size is not None
        if not 0 < self.max_execution_batch_size <= self.max_batch_size:
            raise ValueError(
                f"max_execution_batch_size={self.max_execution_batch_size} must be in "
                f"1..max_batch_size ({self.max_batch_size})"
            )

    def refuses(self, rows: int) -> bool:
        """Whether the server answers a Predict of ``rows`` rows with INVALID_ARGUMENT."""
        return rows > self.max_batch_size


@dataclass(frozen=True)
class MonitoringSettings:
    """Prometheus exposition (MonitoringConfig)."""

    enable: bool = True
    path: str = DEFAULT_PROMETHEUS_PATH


def model_server_config(models: Sequence[ModelSettings]) -> str:
    """The ``models.config`` text (ModelServerConfig); ModelSettings already checked each entry."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    names = [m.name for m in models]
    if not models or len(set(names)) != len(names):
        raise ValueError(f"model names must be non-empty and unique, got {names}")
    config = model_server_config_pb2.ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = model.base_path
        entry.model_platform = "tensorflow"
        policy = entry.model_version_policy
        if model.policy == "all":
            policy.all.SetInParent()
        elif model.policy == "specific":
            policy.specific.versions.extend(model.versions)
        elif model.num_versions != 1:
            policy.latest.num_versions = model.num_versions
        for label, version in sorted(model.labels.items()):
            entry.version_labels[label] = version
    return text_format.MessageToString(config)


def batching_parameters(settings: BatchingSettings) -> str:
    """The ``batching_parameters_file`` text (BatchingParameters)."""
    from google.protobuf import text_format

    from serving.model_server.protos import server_configs_pb2

    params = server_configs_pb2.BatchingParameters()
    params.max_batch_size.value = settings.max_batch_size
    params.batch_timeout_micros.value = settings.batch_timeout_micros
    params.num_batch_threads.value = settings.num_batch_threads
    params.max_enqueued_batches.value = settings.max_enqueued_batches
    params.allowed_batch_sizes.extend(settings.allowed_batch_sizes)
    params.pad_variable_length_inputs = settings.pad_variable_length_inputs
    if settings.enable_large_batch_splitting:
        assert settings.max_execution_batch_size is not None
        params.enable_large_batch_splitting.value = True
        params.max_execution_batch_size.value = settings.max_execution_batch_size
    text = text_format.MessageToString(params)
    parse_batching_parameters(text, "generated batching parameters")  # same checks as the server
    return text


def monitoring_config(settings: MonitoringSettings) -> str:
    """The ``monitoring_config_file`` text (MonitoringConfig)."""
    from google.protobuf import text_format

    from serving.model_server.protos import server_configs_pb2

    config = server_configs_pb2.MonitoringConfig()
    config.prometheus_config.enable = settings.enable
    config.prometheus_config.path = settings.path
    return text_format.MessageToString(config)


def write_configs(
    out_dir: str | Path,
    models: Sequence[ModelSettings],
    batching: BatchingSettings | None = None,
    monitoring: MonitoringSettings | None = None,
) -> dict[str, Path]:
    """Write models.config (and batching.config / monitoring.config when given), atomically.

    Returns:
        The written files by kind: ``models``, ``batching``, ``monitoring``.
    """
    out = Path(out_dir)
    written = {"models": out / MODELS_CONFIG}
    atomic_write_text(written["models"], model_server_config(models))
    if batching is not None:
        written["batching"] = out / BATCHING_CONFIG
        atomic_write_text(written["batching"], batching_parameters(batching))
    if monitoring is not None:
        written["monitoring"] = out / MONITORING_CONFIG
        atomic_write_text(written["monitoring"], monitoring_config(monitoring))
    return written


def has_version_labels(models: Sequence[ModelSettings]) -> bool:
    """Whether any model of the config assigns version labels."""
    return any(model.labels for model in models)


def server_flags(
    config_dir: str,
    *,
    batching: bool,
    monitoring: bool,
    version_labels: bool = False,
    config_poll_seconds: int = 60,
) -> list[str]:
    """tensorflow_model_server flags for the files in ``config_dir`` (a path inside the container).

    Args:
        version_labels: the models config assigns labels; adds
            ``--allow_version_labels_for_unavailable_models=true``. ServerCore checks labels
            before loading, so a first config with labels makes tensorflow_model_server exit
            FAILED_PRECONDITION without it: nothing is loaded yet. **Decision:** pass the flag
            rather than generate labels only for versions that will be available, which the
            generator cannot know (versions appear on disk at run time). The flag keeps TF's
            safety rule: a label in use still only moves to a loaded version.
    """
    flags = [
        f"--model_config_file={config_dir}/{MODELS_CONFIG}",
        f"--model_config_file_poll_wait_seconds={config_poll_seconds}",
    ]
    if batching:
        flags += ["--enable_batching=true", f"--batching_parameters_file={config_dir}/{BATCHING_CONFIG}"]
    if monitoring:
        flags.append(f"--monitoring_config_file={config_dir}/{MONITORING_CONFIG}")
    if version_labels:
        flags.append("--allow_version_labels_for_unavailable_models=true")
    return flags


def docker_command(
    models_dir: str,
    config_dir: str,
    *,
    image: str = "tensorflow/serving:2.21.0",
    batching: bool = True,
    monitoring: bool = True,
    version_labels: bool = False,
) -> list[str]:
    """The ``docker run`` argv serving ``models_dir`` (mounted at /models) with the generated configs."""
    return [
        "docker",
        "run",
        "--rm",
        "-p",
        "8500:8500",
        "-p",
        "8501:8501",
        "-v",
        f"{models_dir}:/models:ro",
        "-v",
        f"{config_dir}:/config:ro",
        image,
        *server_flags("/config", batching=batching, monitoring=monitoring, version_labels=version_labels),
    ]

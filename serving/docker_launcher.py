"""Start a TF Serving container (official image or ours) with the Docker SDK, wait for AVAILABLE, stop it.

The ``client`` every function takes is a ``docker.DockerClient`` (``docker.from_env()``), or any
object with the same ``containers.run`` / ``containers.list`` surface: nothing here imports
``docker``, so the command building and the waiting are tested with a fake client, and the real
run is ``docker/e2e.sh``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.tfserving_config import BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, server_flags

LABEL = "org.tfserving-recsys.launcher"  # value: the launch name; `down` finds containers by it
CONTAINER_MODELS_DIR = "/models"  # MODEL_BASE_PATH of tensorflow/serving
CONTAINER_CONFIG_DIR = "/config"
DEFAULT_IMAGE = "tensorflow/serving:2.21.0"
LOG_TAIL_LINES = 20

Fetch = Callable[[str, float], tuple[int, bytes]]


class LaunchError(RuntimeError):
    """The container did not start, exited, or its models were not AVAILABLE before the deadline."""


@dataclass(frozen=True)
class LaunchConfig:
    """One model-server container: what to run, what to mount, where to publish, how long to wait.

    Attributes:
        image: ``tensorflow/serving:<tag>``, or an image with its entrypoint contract (ours from
            docker/model-server.Dockerfile): the command is only TF Serving's flags.
        models_dir: host folder mounted read-only at /models.
        config_dir: host folder with the generated configs, mounted read-only at /config.
        model_names: the models to wait for (the first one is the image's ``MODEL_NAME``).
        flags: tensorflow_model_server flags, paths as the container sees them.
        name: container name, also the value of the :data:`LABEL` label.
        host: host address the ports are published on (loopback by default).
        grpc_port, rest_port: host ports for the container's 8500 and 8501.
        network: a Docker network to join (e.g. a compose project's), so containers there reach
            this one by ``name``.
        ready_timeout_s: deadline for every model to have an AVAILABLE version.
        poll_interval_s: time between two status polls.
        log_path: where the container's log is saved (after the wait, and by ``down``).
    """

    image: str
    models_dir: Path
    config_dir: Path
    model_names: tuple[str, ...]
    flags: tuple[str, ...]
    name: str = "recsys-model-server"
    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int = 8501
    network: str | None = None
    ready_timeout_s: float = 180.0
    poll_interval_s: float = 1.0
    log_path: Path | None = None

    def __post_init__(self) -> None:
        # Docker resolves a relative bind source against the daemon's folder, not ours.
        for what in ("models_dir", "config_dir"):
            if not getattr(self, what).is_absolute():
                raise ValueError(f"{what} must be an absolute path, got {getattr(self, what)}")
        if not self.model_names:
            raise ValueError("model_names is empty: nothing to wait for")
        for what in ("grpc_port", "rest_port"):
            if not 1 <= getattr(self, what) <= 65535:
                raise ValueError(f"{what}={getattr(self, what)} is not a port number (1..65535)")
        if self.ready_timeout_s <= 0 or self.poll_interval_s <= 0:
            raise ValueError("ready_timeout_s and poll_interval_s must be positive")

    @property
    def rest_url(self) -> str:
        """The REST API as seen from this host."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.rest_port}"

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``client.containers.run``: a detached container, nothing else implied."""
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": list(self.flags),
            "name": self.name,
            "detach": True,
            "labels": {LABEL: self.name},
            "environment": {"MODEL_NAME": self.model_names[0]},
            "ports": {"8500/tcp": (self.host, self.grpc_port), "8501/tcp": (self.host, self.rest_port)},
            "volumes": {
                str(self.models_dir): {"bind": CONTAINER_MODELS_DIR, "mode": "ro"},
                str(self.config_dir): {"bind": CONTAINER_CONFIG_DIR, "mode": "ro"},
            },
        }
        if self.network is not None:
            kwargs["network"] = self.network
        return kwargs


def launch_config(
    config_dir: Path, models_dir: Path, *, extra_flags: Sequence[str] = (), **options: Any
) -> LaunchConfig:
    """A :class:`LaunchConfig` for the configs written in ``config_dir``.

    The flags follow the files: batching and monitoring flags when those files exist, and
    ``--allow_version_labels_for_unavailable_models`` when models.config assigns labels
    (``server_flags`` says why).

    Raises:
        ValueError: no models.config, or a model's base_path is not below /models (the
            container would not see its versions).
    """
    from serving.model_server.config import read_model_server_config

    config_dir, models_dir = config_dir.resolve(), models_dir.resolve()
    if not (config_dir / MODELS_CONFIG).is_file():
        raise ValueError(
            f"{config_dir / MODELS_CONFIG} does not exist (write it with recsys-serving-config write)"
        )
    models = list(read_model_server_config(config_dir / MODELS_CONFIG).model_config_list.config)
    for model in models:
        if not model.base_path.startswith(CONTAINER_MODELS_DIR + "/"):
            raise ValueError(
                f"model {model.name}: base_path {model.base_path} is not below {CONTAINER_MODELS_DIR}, "
                f"where {models_dir} is mounted"
            )
    flags = server_flags(
        CONTAINER_CONFIG_DIR,
        batching=(config_dir / BATCHING_CONFIG).is_file(),
        monitoring=(config_dir / MONITORING_CONFIG).is_file(),
        version_labels=any(model.version_labels for model in models),
    )
    options.setdefault("image", DEFAULT_IMAGE)
    return LaunchConfig(
        models_dir=models_dir,
        config_dir=config_dir,
        model_names=tuple(model.name for model in models),
        flags=(*flags, *extra_flags),
        **options,
    )


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url``: (status, body), also for HTTP error statuses; OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def model_state(fetch: Fetch, rest_url: str, model: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(any version AVAILABLE, a one-line description) from TF Serving's ``GET /v1/models/<model>``."""
    try:
        status, body = fetch(f"{rest_url}/v1/models/{model}", timeout)
    except OSError as exc:
        return False, f"REST API not answering ({exc.__class__.__name__})"
    try:
        answer = json.loads(body)
    except ValueError:
        return False, f"HTTP {status}, not JSON: {body[:80]!r}"
    if status != 200:
        return False, f"HTTP {status}: {answer.get('error', answer)}"
    versions = answer.get("model_version_status", [])
    states = " ".join(f"{v.get('version')}:{v.get('state')}" for v in versions) or "no versions"
    return any(v.get("state") == "AVAILABLE" for v in versions), states


def log_tail(container: Any, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the container's log (stdout and stderr)."""
    text = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def save_logs(container: Any, path: Path | None) -> None:
    """Write the container's whole log to ``path`` (nothing when None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(container.logs(stdout=True, stderr=True))


def wait_available(
    config: LaunchConfig,
    container: Any,
    *,
    fetch: Fetch = http_get,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = print,
) -> dict[str, str]:
    """Poll until every model has an AVAILABLE version; report each change of state.

    Returns:
        The last state seen per model ("1:AVAILABLE").

    Raises:
        LaunchError: the container exited (TF Serving exits on a config it refuses), or the
            deadline passed; the message has the last states and the log's tail.
    """
    start = clock()
    pending = list(config.model_names)
    seen: dict[str, str] = {}
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs.get("State", {}).get("ExitCode")
            raise LaunchError(
                f"container {config.name} exited (code {code}) before {', '.join(pending)} "
                f"became AVAILABLE; last log lines:\n{log_tail(container)}"
            )
        for model in list(pending):
            available, state = model_state(fetch, config.rest_url, model)
            if seen.get(model) != state:
                progress(f"[{clock() - start:6.1f}s] {model}: {state}")
            seen[model] = state
            if available:
                pending.remove(model)
        if not pending:
            return seen
        if clock() - start >= config.ready_timeout_s:
            states = "; ".join(f"{m}: {seen[m]}" for m in pending)
            raise LaunchError(
                f"timed out after {config.ready_timeout_s:g}s waiting for {', '.join(pending)} to be "
                f"AVAILABLE at {config.rest_url} ({states}); last log lines:\n{log_tail(container)}"
            )
        sleep(config.poll_interval_s)


def _launched(client: Any, name: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL}={name}"}))


def up(client: Any, config: LaunchConfig, **wait: Any) -> Any:
    """Start the container and wait for its models (``wait``: :func:`wait_available`'s options).

    A container that does not get its models AVAILABLE is removed after its log is saved, so
    a failed ``up`` leaves nothing running.

    Raises:
        LaunchError: a container of that launch name exists, or :func:`wait_available` failed.
    """
    existing = _launched(client, config.name)
    if existing:
        raise LaunchError(
            f"container {config.name} already exists ({existing[0].status}); "
            f"stop it first: recsys-serving-config down --name {config.name}"
        )
    container = client.containers.run(**config.run_kwargs())
    try:
        wait_available(config, container, **wait)
    except BaseException:
        save_logs(container, config.log_path)
        container.remove(force=True)
        raise
    save_logs(container, config.log_path)
    return container


def down(client: Any, name: str, *, log_path: Path | None = None, stop_timeout_s: int = 10) -> list[str]:
    """Stop and remove the containers launched as ``name`` (saving the log first); their names."""
    containers = _launched(client, name)
    for container in containers:
        save_logs(container, log_path)
        container.stop(timeout=stop_timeout_s)
        container.remove()
    return [container.name for container in containers]

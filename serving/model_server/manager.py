"""Version lifecycle: which versions are aspired, loading before unloading, status and labels."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from serving.model_server.errors import ServingError
from serving.model_server.servable import DirectRunner, Servable
from serving.model_server.version_policy import aspired_versions, list_versions, version_dir_name
from serving.model_server.warmup import replay_warmup

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass(frozen=True)
class VersionStatus:
    """One version's state as GetModelStatus reports it.

    Attributes:
        version: the version number.
        state: START, LOADING, AVAILABLE, UNLOADING or END (ModelVersionStatus.State names).
        error_code: OK, or the code of the failure that ended the version.
        error_message: empty, or the failure's message.
    """

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class _Model:
    """Mutable per-model state; changed under ModelManager._lock.

    ``latest`` (the highest available version) may be read without the lock: the request path
    asks for it on every call, and taking the lock was ~4% of the batching face's loop time.
    Only ``add``/``remove``/``clear`` change the servables, so it can never go stale.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self._servables: dict[int, Servable] = {}
        self.latest: Servable | None = None
        self.labels: dict[str, int] = {}
        self.failed: set[int] = set()

    @property
    def servables(self) -> Mapping[int, Servable]:
        """Available versions (read-only: change them with add/remove/clear)."""
        return self._servables

    def add(self, version: int, servable: Servable) -> None:
        self._servables[version] = servable
        self._refresh()

    def remove(self, version: int) -> None:
        self._servables.pop(version)
        self._refresh()

    def clear(self) -> None:
        self._servables.clear()
        self._refresh()

    def _refresh(self) -> None:
        self.latest = self._servables[max(self._servables)] if self._servables else None


class ModelManager:
    """Serves the models of a ModelServerConfig and keeps them in step with their base paths.

    A poll looks at each model's numeric version directories, loads (and warms up) aspired
    versions that are new, and only then unloads versions no longer aspired, and only when an
    aspired version is available: so a swap never leaves a gap and a version that fails to load
    never replaces the one serving. Unloading drops the manager's reference; requests still
    holding the old Servable finish on it (the Session closes when the last reference goes).

    Args:
        config: a ``tensorflow.serving.ModelServerConfig`` with a ``model_config_list``.
        runner: what the faces call to run a signature (a Batcher, or DirectRunner by default).
        enable_warmup: replay ``assets.extra/tf_serving_warmup_requests`` before serving.
        warmup_iterations: TF Serving's ``--num_request_iterations_for_warmup``.
        poll_wait_seconds: file-system poll period; 0 or less polls once at start only.
        check_method_name: TF Serving's ``--enable_signature_method_name_check``.
        allow_labels_for_unavailable: ``--allow_version_labels_for_unavailable_models``.
        servable_factory: builds a Servable from (name, version, path); tests may wrap it.
        session_config: the ``ConfigProto`` of every Session (``ServerOptions.session_config``).
        load_context: wraps every load and warm-up, whichever thread runs it (a reload asks in a
            gRPC thread); the server passes ``affinity.unpinned_loads``, since TensorFlow's pools
            start from the thread of the first load and inherit its CPUs.
    """

    def __init__(
        self,
        config: Any,
        *,
        runner: Any = None,
        enable_warmup: bool = True,
        warmup_iterations: int = 1,
        poll_wait_seconds: float = 1.0,
        check_method_name: bool = False,
        allow_labels_for_unavailable: bool = False,
        servable_factory: Callable[[str, int, Path], Servable] | None = None,
        session_config: Any = None,
        load_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.runner = runner if runner is not None else DirectRunner()
        self.enable_warmup = enable_warmup
        self.warmup_iterations = warmup_iterations
        self.poll_wait_seconds = poll_wait_seconds
        self.check_method_name = check_method_name
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.session_config = session_config
        self._load_context = load_context
        self._factory = servable_factory or self._default_factory
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._states: dict[str, dict[int, VersionStatus]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pending_config = config

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Load the initial config and wait until every model has an available version.

        Raises:
            ServingError: UNKNOWN "N servable(s) did not become available: ..." naming each
                servable that failed, as tensorflow_model_server says before exiting.
        """
        config, self._pending_config = self._pending_config, None
        self.reload_config(config)
        if self.poll_wait_seconds > 0:
            self._spawn(self._poll_loop, "model-manager-poll")

    def stop(self) -> None:
        """Stop polling, unload everything and stop the runner."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        with self._lock:
            for name, model in self._models.items():
                for version, servable in list(model.servables.items()):
                    servable.close()
                    self._set(name, version, END)
                model.clear()
        stop = getattr(self.runner, "stop", None)
        if stop is not None:
            stop()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the thread
                log.exception("file system poll failed")

    def watch_config_file(self, read_config: Callable[[], Any], poll_wait_seconds: float) -> None:
        """Re-read the model config every ``poll_wait_seconds`` and apply it when it changed.

        ``read_config`` returns a ModelServerConfig or raises; a bad file is logged and the
        current config stays (TF Serving's --model_config_file_poll_wait_seconds behaviour).
        """

        def loop() -> None:
            last = None
            while not self._stop.wait(poll_wait_seconds):
                try:
                    config = read_config()
                except Exception as exc:
                    log.error("Failed to read model config file: %s", exc)
                    continue
                serialized = config.SerializeToString(deterministic=True)
                if serialized == last:
                    continue
                try:
                    self.reload_config(config)
                    last = serialized
                except ServingError as exc:
                    log.error("Failed to reload model config: %s", exc.message)

        self._spawn(loop, "model-config-poll")

    # -------------------------------------------------------------------- config
    def reload_config(self, config: Any) -> None:
        """Apply a ModelServerConfig (HandleReloadConfigRequest): add, update and remove models.

        Blocks until the new config's versions are loaded. Removed models are unloaded.

        Raises:
            ServingError: INVALID_ARGUMENT for an unusable config, FAILED_PRECONDITION for a
                label on a version that is not available, UNKNOWN when servables of the new
                config did not become available.
        """
        which = config.WhichOneof("config")
        if which == "custom_model_config":
            raise ServingError.invalid_argument(
                "Cannot transition to requested config. It is only legal to transition from one "
                "ModelConfigList to another."
            )
        entries = list(config.model_config_list.config) if which == "model_config_list" else []
        seen: dict[str, int] = {}
        for entry in entries:
            seen[entry.name] = seen.get(entry.name, 0) + 1
        for entry in entries:
            if not entry.name:
                raise ServingError.invalid_argument("Model name must be non-empty in the model config.")
            if seen[entry.name] > 1:
                raise ServingError.invalid_argument(
                    f"Illegal to list model {entry.name} {seen[entry.name]} times in config list"
                )
            if entry.model_platform not in ("", "tensorflow"):
                raise ServingError.invalid_argument(
                    f"Model {entry.name} requested unsupported platform: {entry.model_platform}"
                )
            if not entry.base_path:
                raise ServingError.invalid_argument(f"Model {entry.name} has an empty base_path.")
        with self._poll_lock:
            with self._lock:
                wanted = {entry.name: entry for entry in entries}
                for name in list(self._models):
                    if name not in wanted:
                        self._remove_model(name)
                for name, entry in wanted.items():
                    model = self._models.get(name)
                    if model is None or model.config.base_path != entry.base_path:
                        if model is not None:
                            self._remove_model(name)
                        self._models[name] = _Model(entry)
                        self._states.setdefault(name, {})
                    else:
                        model.config = entry
            failures = self._poll_locked()
            if failures:
                raise ServingError.unknown(
                    f"{len(failures)} servable(s) did not become available: {{"
                    + "".join(f"{{{{name: {n} version: {v}}} due to error: {m}}}, " for n, v, m in failures)
                    + "}"
                )
            self._apply_labels(entries)

    def _apply_labels(self, entries: list[Any]) -> None:
        with self._lock:
            for entry in entries:
                model = self._models[entry.name]
                labels = dict(entry.version_labels)
                for version in labels.values():
                    if version not in model.servables and not self.allow_labels_for_unavailable:
                        raise ServingError.failed_precondition(
                            f"Request to assign label to version {version} of model {entry.name}, "
                            "which is not currently available for inference"
                        )
                model.labels = labels

    def _remove_model(self, name: str) -> None:
        model = self._models.pop(name)
        for version in list(model.servables):
            self._set(name, version, UNLOADING)
            model.remove(version)
            self._set(name, version, END)

    # ------------------------------------------------------------------- polling
    def poll_once(self) -> list[tuple[str, int, str]]:
        """One file-system poll of every model; returns (name, version, error) of failed loads."""
        with self._poll_lock:
            return self._poll_locked()

    def _poll_locked(self) -> list[tuple[str, int, str]]:
        failures: list[tuple[str, int, str]] = []
        with self._lock:
            models = dict(self._models)
        for name, model in models.items():
            base = Path(model.config.base_path)
            on_disk = list_versions(base)
            if not on_disk:
                with self._lock:
                    available = bool(model.servables)
                if not available:
                    failures.append(
                        (
                            name,
                            -1,
                            f"No versions of servable {name} found under base path {base}. Did you "
                            "forget to name your leaf directory as a number (eg. '/1/')?",
                        )
                    )
                continue
            aspired = aspired_versions(model.config, on_disk)
            for version in sorted(aspired):
                with self._lock:
                    if version in model.servables or version in model.failed:
                        continue
                error = self._load(name, version, base / version_dir_name(base, version))
                if error is not None:
                    model.failed.add(version)
                    failures.append((name, version, error))
            with self._lock:
                if any(v in model.servables for v in aspired):
                    for version in sorted(set(model.servables) - aspired):
                        self._set(name, version, UNLOADING)
                        model.remove(version)
                        self._set(name, version, END)
                model.failed &= set(on_disk)
        return failures

    def _load(self, name: str, version: int, path: Path) -> str | None:
        """Load and warm up one version; returns the error message on failure."""
        self._set(name, version, START)
        self._set(name, version, LOADING)
        try:
            with self._load_context():
                servable = self._factory(name, version, path)
                if self.enable_warmup:
                    replay_warmup(servable, self.warmup_iterations)
        except ServingError as exc:
            log.error("Loading servable: {name: %s version: %d} failed: %s", name, version, exc.message)
            self._set(name, version, END, exc.code, exc.message)
            return exc.message
        except Exception as exc:  # loading runs arbitrary TF code; report, never crash the poll
            log.exception("Loading servable: {name: %s version: %d} failed", name, version)
            self._set(name, version, END, grpc.StatusCode.UNKNOWN, str(exc))
            return str(exc)
        with self._lock:
            model = self._models.get(name)
            if model is None:
                servable.close()
                self._set(name, version, END)
                return None
            model.add(version, servable)
            self._set(name, version, AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        return None

    def _default_factory(self, name: str, version: int, path: Path) -> Servable:
        return Servable(
            name, version, path, check_method_name=self.check_method_name, session_config=self.session_config
        )

    def _set(
        self,
        name: str,
        version: int,
        state: str,
        code: grpc.StatusCode = grpc.StatusCode.OK,
        message: str = "",
    ) -> None:
        with self._lock:
            self._states.setdefault(name, {})[version] = VersionStatus(version, state, code, message)

    # ------------------------------------------------------------------ queries
    def get_servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request's model_spec selects: a label, a version, else the latest.

        Raises:
            ServingError: INVALID_ARGUMENT "Unrecognized servable version label: L", or
                NOT_FOUND "Servable not found for request: Latest(name)" / "Specific(name, v)".
        """
        if version is None and not label:
            model = self._models.get(name)  # lock-free: one dict read, then _Model.latest
            latest = model.latest if model is not None else None
            if latest is not None:
                return latest
        with self._lock:
            model = self._models.get(name)
            if label:
                if model is None or label not in model.labels:
                    raise ServingError.invalid_argument(f"Unrecognized servable version label: {label}")
                version = model.labels[label]
            if version is None:
                if model is not None and model.latest is not None:
                    return model.latest
                raise ServingError.not_found(f"Servable not found for request: Latest({name})")
            servable = model.servables.get(int(version)) if model is not None else None
            if servable is None:
                raise ServingError.not_found(f"Servable not found for request: Specific({name}, {version})")
            return servable

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Version states of a model, highest version first (GetModelStatus).

        Raises:
            ServingError: NOT_FOUND with TF Serving's texts for an unknown model or version.
        """
        with self._lock:
            states = dict(self._states.get(name, {}))
        if version is not None:
            if int(version) not in states:
                raise ServingError.not_found(f"Could not find version {version} of model {name}")
            return [states[int(version)]]
        if not states:
            raise ServingError.not_found(f"Could not find any versions of model {name}")
        return [states[v] for v in sorted(states, reverse=True)]

    def model_names(self) -> list[str]:
        """Names of the models in the current config."""
        with self._lock:
            return sorted(self._models)

    def version_labels(self, name: str) -> dict[str, int]:
        """The label -> version map of a model (empty when it has none)."""
        with self._lock:
            model = self._models.get(name)
            return dict(model.labels) if model is not None else {}

    def available_versions(self, name: str) -> list[int]:
        """Versions of a model that are serving now, ascending."""
        with self._lock:
            model = self._models.get(name)
            return sorted(model.servables) if model is not None else []

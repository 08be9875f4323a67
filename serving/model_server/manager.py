"""Version lifecycle (ServerCore + AspiredVersionsManager): load before unload, retries, labels."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import grpc

from serving.model_server import config_rules
from serving.model_server.config_watcher import watch_config
from serving.model_server.errors import ServingError
from serving.model_server.load_retry import RetryPolicy
from serving.model_server.loader import load_servable
from serving.model_server.servable import DirectRunner, Servable
from serving.model_server.served_model import ServedModel
from serving.model_server.serving_state import ServingState
from serving.model_server.version_loader import VersionLoader
from serving.model_server.version_policy import aspired_versions, list_versions, version_dir_name
from serving.model_server.version_status import AVAILABLE, END, LOADING, START, UNLOADING, VersionStatus

log = logging.getLogger(__name__)

__all__ = ["ModelManager", "VersionStatus", "aspired_versions", "list_versions"]

Failure = tuple[str, int, VersionStatus]


class ModelManager(ServingState):
    """Serves the models of a ModelServerConfig and keeps them in step with their base paths.

    A poll looks at each model's numeric version directories, loads (and warms up) aspired
    versions that are new, retrying a failed load as TF Serving does, and only then unloads
    versions no longer aspired, and only when an aspired version is available: a swap never
    leaves a gap and a version that fails to load never replaces the one serving. An unloaded
    version's Session closes once the last request holding it finishes (Servable's finalizer),
    TF Serving's quiescing.

    Args:
        config: the first ``tensorflow.serving.ModelServerConfig``.
        runner: what the faces call to run a signature (a Batcher, or DirectRunner by default).
        enable_warmup: replay ``assets.extra/tf_serving_warmup_requests`` before serving.
        warmup_iterations: ``--num_request_iterations_for_warmup`` (used when > 0, else once).
        poll_wait_seconds: file-system poll period; 0 or less polls once at start only.
        check_method_name: TF Serving's ``--enable_signature_method_name_check``.
        allow_labels_for_unavailable: ``--allow_version_labels_for_unavailable_models``.
        servable_factory: builds a servable from (name, version, path).
        session_config: the ``ConfigProto`` of every Session (``ServerOptions.session_config``).
        load_context: wraps every load and warm-up, whichever thread runs it (a reload asks in a
            gRPC thread); the server passes ``affinity.unpinned_loads``, since TensorFlow's pools
            start from the thread of the first load and inherit its CPUs.
        retry_policy: ``--max_num_load_retries``/``--load_retry_interval_micros``; the default
            here is one attempt (the command line passes TF Serving's 5 x 1 min).
        num_load_threads: ``--num_load_threads``: versions loaded at once (0: one at a time).
        wait_timeout: how long a config waits for its new models (ServerCore's
            servable_state_waiter_timeout); None waits, as TF Serving does, until each has a
            version available or failed, polling the file system meanwhile.
        max_request_tensor_bytes: ``--max_request_tensor_bytes``, the budget the gRPC face
            decodes a Predict's tensors within (None: unbounded; the server also wraps its
            runner in ``tensor_limits.BudgetedRunner`` for the exact total on both faces).
        reload_roots: the folders ``HandleReloadConfigRequest`` may load base paths from
            (``config_rules.reload_roots``); None: anywhere (direct use as a library).
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
        retry_policy: RetryPolicy | None = None,
        num_load_threads: int = 0,
        wait_timeout: float | None = None,
        max_request_tensor_bytes: int | None = None,
        reload_roots: tuple[str, ...] | None = None,
    ) -> None:
        self.runner = runner if runner is not None else DirectRunner()
        self.max_request_tensor_bytes = max_request_tensor_bytes
        self.reload_roots = reload_roots
        self.poll_wait_seconds = poll_wait_seconds
        self.check_method_name = check_method_name
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self.session_config = session_config
        self.loader = VersionLoader(
            servable_factory or self._default_factory,
            warmup_iterations=max(1, warmup_iterations) if enable_warmup else 0,
            load_context=load_context,
            retry_policy=retry_policy or RetryPolicy(0, 0),
        )
        self.num_load_threads = num_load_threads
        self.wait_timeout = wait_timeout
        super().__init__()
        self._poll_lock = threading.Lock()
        self._config_lock = threading.Lock()
        self._config: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pending_config = config

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Load the initial config and wait until every model has an available version.

        Raises:
            ServingError: UNKNOWN "N model(s) did not become available: ..." naming each
                servable that failed, as tensorflow_model_server says before exiting.
        """
        config, self._pending_config = self._pending_config, None
        self.reload_config(config)
        if self.poll_wait_seconds > 0:
            self._spawn(self._poll_loop, "model-manager-poll")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling and the runner (queued requests fail), then unload everything.

        The runner stops first so that no batch runs on a Session being closed; every wait
        is bounded by ``timeout``.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        stop = getattr(self.runner, "stop", None)
        if stop is not None:
            stop()
        with self._lock:
            for name, model in self._models.items():
                for version in list(model.servables):
                    self._set(name, version, UNLOADING)
                    model.remove(version).close()
                    self._set(name, version, END)

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
        """Re-read the model config every ``poll_wait_seconds`` and apply it when it changed."""
        self._spawn(
            lambda: watch_config(read_config, self.reload_config, poll_wait_seconds, self._stop),
            "model-config-poll",
        )

    # -------------------------------------------------------------------- config
    def reload_config(self, config: Any) -> None:
        """Apply a ModelServerConfig as ServerCore::ReloadConfig does.

        In its order: the transition check (an empty config is no action), the config list's
        validation, the label map (before anything loads: a label must name an available
        version unless allowed), then models added, updated (a new base path keeps the
        versions serving until the new ones replace them) and removed, and a wait until each
        new model has a version available or failed.

        Raises:
            ServingError: FAILED_PRECONDITION for an illegal transition or label,
                INVALID_ARGUMENT for an invalid config list, UNKNOWN "N model(s) did not become
                available: ..." when new models did not load.
        """
        with self._config_lock:
            if not config_rules.check_transition(self._config, config):
                log.info("Taking no action for empty config.")
                return
            config_rules.validate_model_config_list(self._config, config)
            with self._lock:
                current = {name: model.labels for name, model in self._models.items()}
                labels = config_rules.label_map(
                    config, self._is_available, current, allow_unavailable=self.allow_labels_for_unavailable
                )
            self._config = config
            entries = {entry.name: entry for entry in config.model_config_list.config}
            with self._poll_lock:
                with self._lock:
                    for name in [n for n in self._models if n not in entries]:
                        self._remove_model(name)
                    new_models = [name for name in entries if name not in self._models]
                    for name, entry in entries.items():
                        model = self._models.get(name)
                        if model is None:
                            model = self._models[name] = ServedModel(entry)
                            self._states.setdefault(name, {})
                        elif model.config.base_path != entry.base_path:
                            model.failed.clear()  # another directory: nothing has failed there
                        model.config = entry
                        model.labels = labels.get(name, {})
                failures = self._poll_locked()
            failures = self._wait_for(new_models, failures)
            if failures:
                raise ServingError.unknown(
                    f"{len(failures)} model(s) did not become available: {{"
                    + "".join(
                        f"{{{{name: {n} version: {v}}}{' due to error: ' + s.health() if s.health() else ''}}}, "
                        for n, v, s in failures
                    )
                    + "}"
                )

    def _wait_for(self, names: list[str], failures: list[Failure]) -> list[Failure]:
        """Poll until every model of ``names`` has a version available or failed for good."""
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        failed = {n for n, _, _ in failures}
        waiting = [n for n in names if n not in failed and not self._settled(n)]
        while waiting:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                for name in waiting:
                    failures.append((name, -1, VersionStatus(-1, START)))
                break
            period = self.poll_wait_seconds if self.poll_wait_seconds > 0 else None
            wait = period if remaining is None else min(remaining, period or remaining)
            if self._stop.wait(wait):
                raise ServingError.unavailable("Server is stopping")
            if period is not None:
                failures += [f for f in self.poll_once() if f[0] in waiting]
            failed = {n for n, _, _ in failures}
            waiting = [n for n in waiting if n not in failed and not self._settled(n)]
        return [f for f in failures if f[0] in names]

    def _settled(self, name: str) -> bool:
        with self._lock:
            model = self._models.get(name)
            return model is None or bool(model.servables)

    def _is_available(self, name: str, version: int) -> bool:
        model = self._models.get(name)
        return model is not None and version in model.servables

    def _remove_model(self, name: str) -> None:
        model = self._models.pop(name)
        for version in list(model.servables):
            self._unload(name, model, version)

    def _unload(self, name: str, model: ServedModel, version: int) -> None:
        """Stop serving a version; its Session closes when the last request using it ends."""
        self._set(name, version, UNLOADING)
        model.remove(version)
        self._set(name, version, END)
        log.info("Done unloading servable version {name: %s version: %d}", name, version)

    # ------------------------------------------------------------------- polling
    def poll_once(self) -> list[Failure]:
        """One file-system poll of every model; returns (name, version, status) of failed loads."""
        with self._poll_lock:
            return self._poll_locked()

    def _poll_locked(self) -> list[Failure]:
        with self._lock:
            models = dict(self._models)
        todo: list[tuple[str, ServedModel, int, Path]] = []
        for name, model in models.items():
            base = Path(model.config.base_path)
            on_disk = list_versions(base)
            if not on_disk:
                log.warning(
                    "No versions of servable %s found under base path %s. Did you forget to name "
                    "your leaf directory as a number (eg. '/1/')?",
                    name,
                    base,
                )
                continue
            aspired = aspired_versions(model.config, on_disk)
            with self._lock:
                model.failed &= set(aspired)
                for version in sorted(aspired):
                    if version not in model.servables and version not in model.failed:
                        todo.append((name, model, version, base / version_dir_name(base, version)))
        if self.num_load_threads > 0 and len(todo) > 1:
            with ThreadPoolExecutor(self.num_load_threads, thread_name_prefix="model-load") as pool:
                results = list(pool.map(lambda t: self._load(*t), todo))
        else:
            results = [self._load(*t) for t in todo]
        failures = [f for f in results if f is not None]
        for name, model in models.items():
            self._unload_unaspired(name, model)
        return failures

    def _unload_unaspired(self, name: str, model: ServedModel) -> None:
        """AvailabilityPreservingPolicy: unload what is no longer aspired once one aspired serves."""
        aspired = aspired_versions(model.config, list_versions(model.config.base_path))
        with self._lock:
            if any(v in model.servables for v in aspired):
                for version in sorted(set(model.servables) - aspired):
                    self._unload(name, model, version)

    def _still_aspired(self, name: str, model: ServedModel, version: int) -> bool:
        if self._stop.is_set() or self._models.get(name) is not model:
            return False
        return version in aspired_versions(model.config, list_versions(model.config.base_path))

    def _load(self, name: str, model: ServedModel, version: int, path: Path) -> Failure | None:
        """Load (with retries) and warm up one version; returns the failure, if any."""
        self._set(name, version, START)
        self._set(name, version, LOADING)

        try:
            servable = self.loader.load(
                name,
                version,
                path,
                should_retry=lambda: self._still_aspired(name, model, version),
                sleep=self._stop.wait,
            )
        except Exception as exc:  # loading runs arbitrary TF code; report, never crash the poll
            if isinstance(exc, ServingError):
                code, message = exc.code, exc.message
            else:
                code, message = grpc.StatusCode.UNKNOWN, str(exc)
            with self._lock:
                model.failed.add(version)
            status = self._set(name, version, END, code, message)
            return (name, version, status)
        with self._lock:
            if self._models.get(name) is not model:
                servable.close()
                self._set(name, version, END)
                return None
            model.add(version, servable)
            self._set(name, version, AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        return None

    def _default_factory(self, name: str, version: int, path: Path) -> Servable:
        return load_servable(
            name, version, path, check_method_name=self.check_method_name, session_config=self.session_config
        )

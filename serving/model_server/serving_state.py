"""What is serving now: the models, their versions' states and labels (the read side)."""

from __future__ import annotations

import threading

import grpc

from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable
from serving.model_server.served_model import ServedModel
from serving.model_server.version_status import VersionStatus


class ServingState:
    """The models and version states the request path reads; the manager writes them.

    ServerCore answers requests from its manager's state (ServableRequestFromModelSpec,
    GetModelStatus); this class is that read side, kept apart from the loading machinery.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, ServedModel] = {}
        self._states: dict[str, dict[int, VersionStatus]] = {}

    def _set(
        self,
        name: str,
        version: int,
        state: str,
        code: grpc.StatusCode = grpc.StatusCode.OK,
        message: str = "",
    ) -> VersionStatus:
        status = VersionStatus(version, state, code, message)
        with self._lock:
            self._states.setdefault(name, {})[version] = status
        return status


    # ------------------------------------------------------------------ queries
    def get_servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request's model_spec selects: a label, a version, else the latest.

        ``label`` None means no label was set; an empty label is a label
        (ServableRequestFromModelSpec looks up whatever the oneof holds).

        Raises:
            ServingError: INVALID_ARGUMENT "ModelSpec has no name specified." or
                "Unrecognized servable version label: L", or NOT_FOUND "Servable not found for
                request: Latest(name)" / "Specific(name, v)".
        """
        if version is None and label is None:
            model = self._models.get(name)  # lock-free: one dict read, then ServedModel.latest
            latest = model.latest if model is not None else None
            if latest is not None:
                return latest
        if not name:
            raise ServingError.invalid_argument("ModelSpec has no name specified.")
        with self._lock:
            model = self._models.get(name)
            if label is not None:
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

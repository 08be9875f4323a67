"""ServerCore's rules for a ModelServerConfig: which transitions, lists and labels it accepts."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import grpc

from serving.model_server.errors import ServingError
from serving.model_server.tensor_limits import quote

TENSORFLOW_PLATFORM = "tensorflow"
_MODEL_TYPE_TENSORFLOW = 1  # ModelType.TENSORFLOW in model_server_config.proto


def check_transition(old: Any | None, new: Any) -> bool:
    """Whether ``new`` is to be applied at all (ServerCore::ReloadConfig's first checks).

    Returns:
        False for an empty config: "Taking no action for empty config", so a truncated config
        file never unloads every model.

    Raises:
        ServingError: FAILED_PRECONDITION when the transition is not from one
            ModelConfigList to another (a first config, or the same config, is always legal).
    """
    old_case = old.WhichOneof("config") if old is not None else None
    new_case = new.WhichOneof("config")
    legal = old_case is None or old == new or (old_case == new_case == "model_config_list")
    if not legal:
        raise ServingError.failed_precondition(
            "Cannot transition to requested config. It is only legal to transition from one "
            "ModelConfigList to another."
        )
    if new_case is None:
        return False
    if new_case != "model_config_list":
        raise ServingError.invalid_argument("ModelServer does not yet support custom model config.")
    return True


def platform(entry: Any) -> str:
    """A ModelConfig's platform (GetPlatform in server_core.cc, with its texts).

    Raises:
        ServingError: INVALID_ARGUMENT for both or neither of model_type/model_platform, or an
            unsupported model_type.
    """
    if entry.model_type != 0:
        if entry.model_platform:
            raise ServingError.invalid_argument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {entry.name}"
            )
        if entry.model_type != _MODEL_TYPE_TENSORFLOW:
            raise ServingError.invalid_argument(
                f"ModelServerConfig::model_type choice {entry.model_type} not supported."
            )
        return TENSORFLOW_PLATFORM
    if not entry.model_platform:
        raise ServingError.invalid_argument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {entry.name}"
        )
    return str(entry.model_platform)


def _is_relative_path(uri: str) -> bool:
    """UriIsRelativePath: no scheme, no host, and a path not starting with '/'."""
    parts = urlsplit(uri)
    if parts.scheme and "://" in uri:
        return False
    return not uri.startswith("/")


def validate_model_config_list(old: Any | None, new: Any) -> None:
    """ValidateModelConfigList, ValidateNoModelsChangePlatforms and CreateStoragePathRoutes.

    Raises:
        ServingError: INVALID_ARGUMENT with server_core.cc's texts: a name listed twice, a
            relative base path, a platform that changes or is not served here.
    """
    names: set[str] = set()
    for entry in new.model_config_list.config:
        if entry.name in names:
            raise ServingError.invalid_argument(
                f"Illegal to list model {entry.name} multiple times in config list"
            )
        names.add(entry.name)
    for entry in new.model_config_list.config:
        if _is_relative_path(entry.base_path):
            raise ServingError.invalid_argument(
                f"Expected model {entry.name} to have an absolute path or URI; got base_path()={entry.base_path}"
            )
    if old is not None and old.WhichOneof("config") == "model_config_list":
        before = {entry.name: platform(entry) for entry in old.model_config_list.config}
        for entry in new.model_config_list.config:
            if entry.name in before and platform(entry) != before[entry.name]:
                raise ServingError.invalid_argument(
                    f"Illegal to change a model's platform. For model {entry.name} platform was "
                    f"{before[entry.name]} and new platform requested is {platform(entry)}"
                )
    for entry in new.model_config_list.config:
        requested = platform(entry)
        if requested != TENSORFLOW_PLATFORM:
            raise ServingError.invalid_argument(
                f"Model {entry.name} requests unsupported platform {requested}"
            )


def label_map(
    config: Any,
    is_available: Callable[[str, int], bool],
    current: Mapping[str, Mapping[str, int]],
    *,
    allow_unavailable: bool,
) -> dict[str, dict[str, int]]:
    """The new label -> version map of every model (UpdateModelVersionLabelMap).

    Computed before anything of the new config loads, as ServerCore does: a label may only
    point at a version that is AVAILABLE now. With ``allow_unavailable``
    (``--allow_version_labels_for_unavailable_models``) a label may point at an unavailable
    version only if it is new or already points there, so a label in use never moves to a
    version that cannot serve.

    Raises:
        ServingError: FAILED_PRECONDITION with ServerCore's text for a label it refuses.
    """
    labels: dict[str, dict[str, int]] = {}
    for entry in config.model_config_list.config:
        for label, version in sorted(entry.version_labels.items()):  # a stable order for the error
            existing = current.get(entry.name, {}).get(label)
            allowed = allow_unavailable and (existing is None or existing == version)
            if not allowed and not is_available(entry.name, version):
                raise ServingError.failed_precondition(
                    f"Request to assign label to version {version} of model {entry.name}, "
                    "which is not currently available for inference"
                )
            labels.setdefault(entry.name, {})[label] = int(version)
    return labels


# ------------------------------------------------------------- reloads through the API (ours)
# A SavedModel runs code when it loads (its init ops: reading and writing files was shown), and
# ModelService/HandleReloadConfigRequest has no authentication, so the API may only load base
# paths under the roots the operator chose: those the server started with and
# --model_config_roots. The config file the operator writes (--model_config_file polling) is not
# restricted.


def _normalized(path: str) -> str:
    """A base path or root made comparable: symlinks and '..' resolved (URIs: '..' only)."""
    parts = urlsplit(path)
    if parts.scheme and "://" in path:
        return f"{parts.scheme}://{parts.netloc}{posixpath.normpath(parts.path or '/')}"
    return os.path.realpath(path)


def reload_roots(config: Any, extra_roots: Iterable[str] = ()) -> tuple[str, ...]:
    """The folders HandleReloadConfigRequest may load from: the starting base paths, plus ``extra_roots``."""
    starting = (
        [entry.base_path for entry in config.model_config_list.config]
        if config.WhichOneof("config") == "model_config_list"
        else []
    )
    roots = [_normalized(path) for path in [*starting, *extra_roots] if path and not _is_relative_path(path)]
    return tuple(dict.fromkeys(roots))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_reload_roots(config: Any, roots: tuple[str, ...]) -> None:
    """Refuse a reload whose base paths are not under ``roots``.

    Relative base paths are left to ``validate_model_config_list`` (INVALID_ARGUMENT, TF's text).

    Raises:
        ServingError: PERMISSION_DENIED naming the model and its base path.
    """
    for entry in config.model_config_list.config:
        if _is_relative_path(entry.base_path):
            continue
        path = _normalized(entry.base_path)
        if not any(_is_under(path, root) for root in roots):
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"HandleReloadConfigRequest may not load model {quote(entry.name)} from base_path "
                f"{quote(entry.base_path)}: it is not under the model roots the server was started "
                f"with ({quote(', '.join(roots))}); add a root with --model_config_roots",
            )

"""Which servable a version directory becomes: TF Lite when preferred and present, else the SavedModel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.model_server.runtime import SERVING_TAG
from serving.model_server.servable import Servable
from serving.model_server.tflite_servable import TFLITE_MODEL_FILENAME, TfLiteServable


def load_servable(
    name: str,
    version: int,
    path: str | Path,
    *,
    prefer_tflite: bool = False,
    saved_model_tags: Sequence[str] = (SERVING_TAG,),
    check_method_name: bool = False,
    session_config: Any = None,
    num_tflite_pools: int = 1,
) -> Servable:
    """Build the servable of one version as SavedModelBundleFactory does.

    With ``prefer_tflite`` (``--prefer_tflite_model``) and a ``model.tflite`` in ``path``, the
    version runs on TF Lite and the SavedModel options do not apply; otherwise, even with
    ``prefer_tflite``, it is the SavedModel (TF Serving falls back the same way).

    Args:
        name: model name.
        version: version number.
        path: the version directory.
        prefer_tflite: ``--prefer_tflite_model``.
        saved_model_tags: ``--saved_model_tags`` split on commas (empty means ``serve``, as
            TF Serving defaults it).
        check_method_name: ``--enable_signature_method_name_check``.
        session_config: the ``ConfigProto`` of the SavedModel's Session.
        num_tflite_pools: ``--num_tflite_pools``: interpreters a TF Lite version may run at once.

    Raises:
        ServingError: the servable's load error (NOT_FOUND when no meta graph has exactly
            ``saved_model_tags``).
    """
    path = Path(path)
    if prefer_tflite and (path / TFLITE_MODEL_FILENAME).exists():
        return TfLiteServable(
            name, version, path, check_method_name=check_method_name, num_interpreters=num_tflite_pools
        )
    tags = tuple(tag for tag in saved_model_tags if tag) or (SERVING_TAG,)
    return Servable(
        name, version, path, check_method_name=check_method_name, session_config=session_config, tags=tags
    )

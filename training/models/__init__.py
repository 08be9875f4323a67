"""CTR model zoo (Keras 3) with in-graph preprocessing; host-side numpy preprocessing for ONNX.

Attributes are imported lazily so ``training.models.host_preprocess`` (the ONNX path) can be used
without importing TensorFlow.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MODEL_NAMES": "training.models.zoo",
    "SEQUENCE_MODEL_NAMES": "training.models.zoo",
    "build_model": "training.models.zoo",
    "build_core": "training.models.zoo",
    "split_model": "training.models.zoo",
    "with_logit": "training.models.zoo",
    "ModelConfig": "training.models.config",
    "preprocess_numpy": "training.models.host_preprocess",
    "fingerprint64": "training.models.farmhash",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'training.models' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)

"""Plain, TensorFlow-free descriptions of what a served model says about itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelVersionStatus:
    """One version of a model as reported by GetModelStatus (or ``GET /v1/models/<name>``).

    Attributes:
        version: The integer version.
        state: ``UNKNOWN``, ``START``, ``LOADING``, ``AVAILABLE``, ``UNLOADING`` or ``END``.
        error_code: The status code name, ``"OK"`` unless loading failed.
        error_message: The server's message for a failed load, else empty.
    """

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    @property
    def available(self) -> bool:
        """True when this version can serve requests."""
        return self.state == "AVAILABLE"


@dataclass(frozen=True)
class TensorSpec:
    """Dtype and shape of one signature input or output.

    Attributes:
        dtype: Numpy-style name as in the feature contract (``float32``, ``int64``, ``string``,
            ...), so ``{n: s.dtype for n, s in sig.inputs.items()} == contract.signature_spec()``.
        shape: One entry per dimension, ``None`` for an unknown size; ``None`` for unknown rank.
    """

    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class SignatureSpec:
    """One SignatureDef: named inputs and outputs and the method (``tensorflow/serving/predict``)."""

    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    method_name: str


@dataclass(frozen=True)
class ModelMetadata:
    """What GetModelMetadata returns: the resolved model version and its signatures by name."""

    model_name: str
    version: int | None
    signatures: Mapping[str, SignatureSpec]

    def signature(self, name: str = "serving_default") -> SignatureSpec:
        """The named signature; KeyError lists the ones the model has."""
        try:
            return self.signatures[name]
        except KeyError:
            raise KeyError(
                f"model {self.model_name!r} has no signature {name!r} (has {sorted(self.signatures)})"
            ) from None


class Outputs(dict[str, np.ndarray]):
    """A Predict answer's outputs by name, plus the model that answered.

    A dict, so every caller of ``predict`` keeps working; the two attributes say who answered:

    Attributes:
        model_name: the model the server says answered (the requested name when it does not say).
        version: gRPC's ``PredictResponse.model_spec.version``; ``None`` where the server does
            not say (TF Serving's REST predict answer has no model_spec), so callers learn the
            version from GetModelStatus instead.
    """

    def __init__(
        self, outputs: Mapping[str, np.ndarray], *, model_name: str = "", version: int | None = None
    ) -> None:
        super().__init__(outputs)
        self.model_name = model_name
        self.version = version

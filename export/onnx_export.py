"""ONNX path: the numeric ``core`` through tf2onnx, string preprocessing on the host in numpy.

Known trap, and why the graph is cut where it is: TensorFlow hashes strings with
``Fingerprint64`` (``tf.strings.to_hash_bucket_fast``, and the OOV buckets of vocabulary lookups).
tf2onnx has no faithful ONNX equivalent; with onnxruntime-extensions it maps string hashing to a
custom op whose hash differs, so ids and therefore scores come out silently wrong. The exported
ONNX model therefore starts *after* preprocessing (int32 ids, normalised float32), and
``training.models.host_preprocess.preprocess_numpy`` reproduces the in-graph lookups and
Fingerprint64 hashing bit for bit on the host. ``check_parity`` proves the two routes agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import ExportError
from training.atomic_files import atomic_write_bytes
from training.features import FeatureContract

DEFAULT_OPSET = 17
CONTRACT_METADATA_KEY = "feature_contract"
OUTPUT_NAME = "ctr"
PARITY_RTOL = 1e-3
PARITY_ATOL = 1e-5


def core_signature(core: Any) -> dict[str, Any]:
    """``tf.TensorSpec`` per core input (batch dimension None), named as the feature."""
    import tensorflow as tf

    specs = {}
    for tensor in core.inputs:
        name = tensor.name
        shape = [None, *list(tensor.shape)[1:]]
        specs[name] = tf.TensorSpec(shape, tf.dtypes.as_dtype(str(tensor.dtype)), name=name)
    return specs


def convert_core(model: Any, contract: FeatureContract, *, opset: int = DEFAULT_OPSET) -> Any:
    """The ``core`` sub-model of a zoo model as a checked ``onnx.ModelProto`` with output ``ctr``.

    The contract JSON is stored in the model's metadata so the ONNX file is self-describing.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from training.models import split_model

    try:
        _, core = split_model(model)
    except ValueError as exc:
        raise ExportError(f"ONNX export needs a zoo model with a 'core' sub-model: {exc}") from exc
    specs = core_signature(core)
    missing = [n for n in contract.names if n not in specs]
    if missing:
        raise ExportError(f"core inputs {sorted(specs)} miss contract features {missing}")

    @tf.function(input_signature=[specs], autograph=False)
    def core_fn(inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: tf.reshape(tf.cast(core(inputs, training=False), tf.float32), [-1])}

    try:
        model_proto, _ = tf2onnx.convert.from_function(core_fn, input_signature=[specs], opset=opset)
    except Exception as exc:  # tf2onnx raises bare Exceptions for unsupported ops
        raise ExportError(f"tf2onnx could not convert the core of {model.name!r}: {exc}") from exc
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = CONTRACT_METADATA_KEY, contract.to_json()
    onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


def export_onnx(
    model: Any, contract: FeatureContract, path: str | Path, *, opset: int = DEFAULT_OPSET
) -> Path:
    """Convert, check and write the core atomically to ``path`` (refusing to overwrite)."""
    target = Path(path)
    if target.exists():
        raise ExportError(f"{target} already exists; refusing to overwrite it")
    proto = convert_core(model, contract, opset=opset)
    try:
        atomic_write_bytes(target, proto.SerializeToString())
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


class OnnxScorer:
    """Raw features -> host preprocessing -> ONNX Runtime core -> click probabilities."""

    def __init__(self, path: str | Path, contract: FeatureContract | None = None) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model {self.path} not found")
        if contract is None:
            meta = {
                p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props
            }
            if CONTRACT_METADATA_KEY not in meta:
                raise ExportError(f"{self.path} carries no feature contract; pass one")
            contract = FeatureContract.from_json(meta[CONTRACT_METADATA_KEY])
        self.contract = contract
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        names = sorted(i.name for i in self.session.get_inputs())
        if names != sorted(contract.names):
            raise ExportError(
                f"{self.path}: ONNX inputs {names} != contract features {sorted(contract.names)}"
            )

    def preprocess(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        from training.models.host_preprocess import preprocess_numpy

        return preprocess_numpy(self.contract, columns)

    def run_core(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], dict(feeds))[0]

    def __call__(self, columns: Mapping[str, Any]) -> np.ndarray:
        return self.run_core(self.preprocess(columns))


@dataclass(frozen=True)
class ParityReport:
    """ONNX vs SavedModel on the same rows."""

    rows: int
    max_abs_diff: float
    rtol: float
    atol: float


def check_parity(
    scorer: OnnxScorer,
    saved_model_scores: np.ndarray,
    columns: Mapping[str, Any],
    *,
    rtol: float = PARITY_RTOL,
    atol: float = PARITY_ATOL,
) -> ParityReport:
    """Assert ONNX scores equal ``saved_model_scores`` within rtol/atol; raises AssertionError otherwise."""
    onnx_scores = scorer(columns)
    np.testing.assert_allclose(onnx_scores, saved_model_scores, rtol=rtol, atol=atol)
    diff = float(np.max(np.abs(onnx_scores.astype(np.float64) - np.asarray(saved_model_scores, np.float64))))
    return ParityReport(rows=len(onnx_scores), max_abs_diff=diff, rtol=rtol, atol=atol)

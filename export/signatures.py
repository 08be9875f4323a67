"""SignatureDef bookkeeping: TF Serving method names, the tf.Example spec, `saved_model_cli`-style text.

TF2's ``tf.saved_model.save`` records every signature with method name
``tensorflow/serving/predict``. TF Serving's Classify and Regress APIs refuse a signature whose
method name is not ``tensorflow/serving/classify`` / ``tensorflow/serving/regress``
(``GetClassificationSignatureDef`` and ``GetRegressionSignatureDef`` in
``tensorflow_serving/servables/tensorflow/{classifier,regressor}.cc``), so the exporter rewrites
them in ``saved_model.pb`` after saving.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from export.errors import ExportError
from training.atomic_files import atomic_write_bytes
from training.features import FeatureContract

SERVING_DEFAULT = "serving_default"
CLASSIFY_SIGNATURE = "classification"
REGRESS_SIGNATURE = "regression"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
EXAMPLES_INPUT = "inputs"  # kClassifyInputs == kRegressInputs
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_OUTPUTS = "outputs"
SAVED_MODEL_PB = "saved_model.pb"
SERVE_TAG = "serve"

METHOD_NAMES = {
    SERVING_DEFAULT: PREDICT_METHOD,
    CLASSIFY_SIGNATURE: CLASSIFY_METHOD,
    REGRESS_SIGNATURE: REGRESS_METHOD,
}


def example_feature_spec(contract: FeatureContract) -> dict[str, Any]:
    """``tf.io.parse_example`` spec: one scalar FixedLenFeature per contract feature.

    A feature absent from an Example takes the contract's ``default`` (the cold-start value the
    client would send), so partial Examples score instead of failing.
    """
    import tensorflow as tf

    spec = {}
    for feature in contract.features:
        dtype = tf.dtypes.as_dtype(feature.dtype)
        spec[feature.name] = tf.io.FixedLenFeature([], dtype, default_value=feature.default)
    return spec


def read_saved_model_proto(export_dir: Path) -> Any:
    """Parse ``saved_model.pb`` (a ``tensorflow.SavedModel`` proto)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(export_dir) / SAVED_MODEL_PB
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError; anything else also means "not a SavedModel"
        raise ExportError(f"{path} is not a SavedModel proto: {exc}") from exc
    return proto


def serve_meta_graph(proto: Any, where: str = "SavedModel") -> Any:
    """The MetaGraphDef tagged exactly ``serve`` (what TF Serving loads by default)."""
    for meta_graph in proto.meta_graphs:
        if list(meta_graph.meta_info_def.tags) == [SERVE_TAG]:
            return meta_graph
    raise ExportError(f"{where} has no MetaGraphDef with tag-set {{'{SERVE_TAG}'}}")


def set_method_names(export_dir: Path, method_names: Mapping[str, str]) -> None:
    """Rewrite the method name of the given signatures in ``saved_model.pb``, then its fingerprint.

    ``fingerprint.pb`` hashes ``saved_model.pb``; it is regenerated so tools that compare it
    (TF's loader metrics, model registries) see a consistent pair.
    """
    proto = read_saved_model_proto(export_dir)
    meta_graph = serve_meta_graph(proto, str(export_dir))
    for key, method in method_names.items():
        if key not in meta_graph.signature_def:
            raise ExportError(f"{export_dir}: no signature {key!r} to set method name {method!r} on")
        meta_graph.signature_def[key].method_name = method
    atomic_write_bytes(Path(export_dir) / SAVED_MODEL_PB, proto.SerializeToString(deterministic=True))
    _rewrite_fingerprint(Path(export_dir))


def _rewrite_fingerprint(export_dir: Path) -> None:
    fingerprint = export_dir / "fingerprint.pb"
    if not fingerprint.exists():
        return
    try:
        from tensorflow.python.saved_model import fingerprinting_utils
    except ImportError:  # private module moved: a stale fingerprint is worse than none (it is optional)
        fingerprint.unlink()
        return
    fingerprinting_utils.write_fingerprint(str(export_dir))


def describe_signatures(export_dir: Path) -> str:
    """The SignatureDef part of ``saved_model_cli show --all --dir <export_dir>``, as text.

    Same layout as ``tensorflow/python/tools/saved_model_cli.py`` (``_show_all``,
    ``_show_inputs_outputs_mgd``, ``_print_tensor_info``): meta graphs sorted by tags,
    signatures and their inputs/outputs sorted by key. The "Concrete Functions" listing that
    follows in the real tool is omitted (it needs a full load and is not part of the API).
    """
    from tensorflow.core.framework import types_pb2

    dtype_names = {value: key for key, value in types_pb2.DataType.items()}
    proto = read_saved_model_proto(export_dir)
    lines: list[str] = []
    for meta_graph in sorted(proto.meta_graphs, key=lambda m: list(m.meta_info_def.tags)):
        tags = ", ".join(meta_graph.meta_info_def.tags)
        lines.append("")
        lines.append(f"MetaGraphDef with tag-set: '{tags}' contains the following SignatureDefs:")
        for key in sorted(meta_graph.signature_def):
            signature = meta_graph.signature_def[key]
            lines.append("")
            lines.append(f"signature_def['{key}']:")
            lines.append("  The given SavedModel SignatureDef contains the following input(s):")
            for name, info in sorted(signature.inputs.items()):
                lines.append(f"    inputs['{name}'] tensor_info:")
                lines.extend(_tensor_info_lines(info, dtype_names))
            lines.append("  The given SavedModel SignatureDef contains the following output(s):")
            for name, info in sorted(signature.outputs.items()):
                lines.append(f"    outputs['{name}'] tensor_info:")
                lines.extend(_tensor_info_lines(info, dtype_names))
            lines.append(f"  Method name is: {signature.method_name}")
    return "\n".join(lines) + "\n"


def _tensor_info_lines(info: Any, dtype_names: Mapping[int, str]) -> list[str]:
    if info.tensor_shape.unknown_rank:
        shape = "unknown_rank"
    else:
        shape = "(" + ", ".join(str(dim.size) for dim in info.tensor_shape.dim) + ")"
    return [
        f"        dtype: {dtype_names[info.dtype]}",
        f"        shape: {shape}",
        f"        name: {info.name}",
    ]


def signature_inputs(export_dir: Path, key: str = SERVING_DEFAULT) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Input name -> (dtype name as in the contract, shape with -1 for unknown) of one signature."""
    import tensorflow as tf

    meta_graph = serve_meta_graph(read_saved_model_proto(export_dir), str(export_dir))
    if key not in meta_graph.signature_def:
        raise ExportError(f"{export_dir}: no signature {key!r} (have {sorted(meta_graph.signature_def)})")
    out = {}
    for name, info in meta_graph.signature_def[key].inputs.items():
        shape = () if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
        out[name] = (tf.dtypes.as_dtype(info.dtype).name, shape)
    return out


def method_names(export_dir: Path) -> dict[str, str]:
    """Signature key -> method name, as TF Serving's C++ loader sees them."""
    meta_graph = serve_meta_graph(read_saved_model_proto(export_dir), str(export_dir))
    return {key: sig.method_name for key, sig in meta_graph.signature_def.items()}

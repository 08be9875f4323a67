"""SignatureDefs as TF Serving reads them: tensor infos, dtype enums and the ``serve`` MetaGraphDef."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.runtime import SERVING_TAG
from serving.model_server.tensors import TensorConversionError, tf_dtype

if TYPE_CHECKING:
    from tensorflow.core.protobuf import meta_graph_pb2

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


class TensorInfo(NamedTuple):
    """TF Serving's view of one signature input or output.

    Attributes:
        dtype: the TensorFlow ``DataType`` enum value recorded in the SignatureDef (1 = DT_FLOAT ...).
        shape: dims with -1 for unknown sizes, or None when the rank is unknown or unrecorded.
        tensor_name: the graph tensor fed or fetched (``"x:0"``).
    """

    dtype: int
    shape: tuple[int, ...] | None
    tensor_name: str


class SignatureInfo(NamedTuple):
    """A SignatureDef reduced to what request handling needs."""

    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


def dtype_enum(array: np.ndarray) -> int:
    """``tensors.tf_dtype`` of a request array, as the INVALID_ARGUMENT a client gets for a dtype
    TensorFlow does not have."""
    try:
        return tf_dtype(array)
    except TensorConversionError:
        raise ServingError.invalid_argument(f"Unsupported tensor dtype: {array.dtype}") from None


def tensor_info(info: Any) -> TensorInfo:
    """A SignatureDef TensorInfo as TF Serving reads it (unknown rank -> shape None)."""
    shape: tuple[int, ...] | None
    if not info.HasField("tensor_shape") or info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(d.size) for d in info.tensor_shape.dim)
    return TensorInfo(int(info.dtype), shape, info.name)


def signature_infos(meta_graph: meta_graph_pb2.MetaGraphDef) -> dict[str, SignatureInfo]:
    """Every SignatureDef of a MetaGraphDef as the request path reads it (name -> info)."""
    return {
        key: SignatureInfo(
            sig.method_name,
            {alias: tensor_info(info) for alias, info in sig.inputs.items()},
            {alias: tensor_info(info) for alias, info in sig.outputs.items()},
        )
        for key, sig in meta_graph.signature_def.items()
    }


def read_meta_graph(path: Path, tags: Sequence[str] = (SERVING_TAG,)) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef with exactly ``tags`` (``--saved_model_tags``), with TF Serving's errors."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    if pb.is_file():
        saved_model.ParseFromString(pb.read_bytes())
    elif pbtxt.is_file():
        text_format.Parse(pbtxt.read_text(), saved_model)
    else:
        raise ServingError.not_found(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. "
            "Check that the directory exists and that you have the right permissions for accessing it."
        )
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    listed = " ".join(sorted(wanted))
    raise ServingError.not_found(
        f"Could not find meta graph def matching supplied tags: {{ {listed} }}. To inspect available "
        "tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`"
    )

"""The SignatureDefs of a TF Lite model, read as TF Serving's tflite_session.cc reads them."""

# TF Serving takes the SignatureDefs stored in the model's metadata when there are any, else it
# builds one Predict signature over the interpreter's inputs and outputs; either way the tensor
# names are checked against the interpreter's. Kept apart from the runtime (tflite_servable) so
# each module holds one concept.

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.signatures import DEFAULT_SIGNATURE, PREDICT_METHOD
from serving.model_server.tensors import DT, TensorConversionError, tf_dtype

if TYPE_CHECKING:
    from tensorflow.core.protobuf import meta_graph_pb2

TFLITE_MODEL_FILENAME = "model.tflite"
# The Metadata entry TF Lite's signature_def_util stores SignatureDefs under (a FlexBuffer map
# of signature key -> serialized SignatureDef), which TF Serving reads.
_SIGNATURE_DEFS_METADATA = b"signature_defs_metadata"

# TfLiteTypeToTfType in tflite_session.cc: the only tensor types TF Serving accepts ...
_TFLITE_DTYPES = frozenset(
    {DT.DT_FLOAT, DT.DT_INT32, DT.DT_UINT8, DT.DT_INT64, DT.DT_STRING, DT.DT_BOOL, DT.DT_INT16}
    | {DT.DT_COMPLEX64, DT.DT_INT8}
)
# ... and the TfLiteType numbers (tensorflow/lite/core/c/common.h) of others, for its error text.
_TFLITE_TYPE_NUMBER = dict(float16=10, float64=11, complex128=12, uint64=13, uint32=16, uint16=17)


class Tensor(NamedTuple):
    """An interpreter input or output: its index, TF dtype enum and dims at load."""

    tensor_index: int
    dtype: int
    shape: tuple[int, ...]


def tensor_map(details: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Tensor]:
    """GetTensorInfoMap: interpreter tensors by name, with TF Serving's load errors."""
    tensors: dict[str, Tensor] = {}
    for detail in details:
        name, index, dtype = detail["name"], int(detail["index"]), np.dtype(detail["dtype"])
        if not name:
            raise ServingError.internal(f"{kind} name missing for tensor index: {index}")
        try:
            dtype_enum = tf_dtype(np.empty(0, dtype))
        except TensorConversionError:
            dtype_enum = -1
        if dtype_enum not in _TFLITE_DTYPES:
            raise ServingError.internal(
                f"Unknown TfLite type: {_TFLITE_TYPE_NUMBER.get(dtype.name, dtype.name)}"
            )
        if name in tensors:
            raise ServingError(
                grpc.StatusCode.ALREADY_EXISTS, f"{kind} tensor name: {name} has multiple indices"
            )
        tensors[name] = Tensor(index, dtype_enum, tuple(int(d) for d in detail["shape"]))
    return tensors


def _legacy_name(tf_name: str) -> str:
    """TfToTfLiteLegacyTensorName: early TF Lite converters dropped the ``:0`` suffix."""
    return tf_name.split(":", 1)[0]


def _fix_name(known: Mapping[str, Tensor], name: str, context: str) -> str:
    """FixTfLiteTensorName: the name itself, else its legacy form, else INTERNAL."""
    if name in known:
        return name
    if _legacy_name(name) in known:
        return _legacy_name(name)
    raise ServingError.internal(f"Unknown tensor '{name}'.\n\t{context}")


def _stored_signature_defs(content: bytes) -> dict[str, meta_graph_pb2.SignatureDef]:
    """tflite::GetSignatureDefMap: the SignatureDefs in the model's metadata (often none)."""
    from flatbuffers import flexbuffers
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    entries = [model.Metadata(i) for i in range(model.MetadataLength())]
    entry = next((m for m in entries if m.Name() == _SIGNATURE_DEFS_METADATA), None)
    if entry is None:
        return {}
    prefix = "Invalid SignatureDefs found in TfLite model: Error reading signature def map: "
    if entry.Buffer() >= model.BuffersLength():
        raise ServingError.invalid_argument(prefix + "Invalid buffer index in metadata")
    data = model.Buffers(entry.Buffer()).DataAsNumpy()
    try:
        if isinstance(data, int) or len(data) < 3:  # DataAsNumpy gives 0 for an absent vector
            raise ValueError("too short")
        stored = flexbuffers.GetRoot(data.tobytes()).AsMap
        serialized = {
            key.AsKey: value.AsStringBytes for key, value in zip(stored.Keys, stored.Values, strict=True)
        }
    except Exception:  # flexbuffers raises many types on bad data
        raise ServingError.invalid_argument(prefix + "Invalid flexbuffer data") from None
    signatures = {}
    for key, blob in serialized.items():
        signature = meta_graph_pb2.SignatureDef()
        try:
            signature.ParseFromString(blob)
        except Exception:
            raise ServingError.invalid_argument(
                "Invalid SignatureDefs found in TfLite model: Cannot parse signature def found in flatbuffer."
            ) from None
        signatures[key] = signature
    return signatures


def signature_defs(
    content: bytes, inputs: Mapping[str, Tensor], outputs: Mapping[str, Tensor]
) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs TfLiteSession::Create exposes for a model.

    Stored SignatureDefs are kept with each tensor name resolved to an interpreter tensor
    (``tflite_input:0`` -> ``tflite_input``). Without any, TF Serving builds ``serving_default``
    (predict method) keyed by the tensor names without ``:N``, with the full names, dtypes and
    the model's dims.
    """
    from tensorflow.core.protobuf import meta_graph_pb2

    stored = _stored_signature_defs(content)
    for signature in stored.values():
        for alias, info in signature.inputs.items():
            info.name = _fix_name(inputs, info.name, f"Signature input {alias} references an unknown tensor")
        for alias, info in signature.outputs.items():
            info.name = _fix_name(
                outputs, info.name, f"Signature output {alias} references an unknown tensor"
            )
    if stored:
        return stored
    default = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    for infos, tensors in ((default.inputs, inputs), (default.outputs, outputs)):
        for name in sorted(tensors):  # TF iterates a std::map: on a key clash the last name wins
            info = infos[_legacy_name(name)]
            info.Clear()
            info.name, info.dtype = name, tensors[name].dtype
            for size in tensors[name].shape:
                info.tensor_shape.dim.add().size = size
    return {DEFAULT_SIGNATURE: default}

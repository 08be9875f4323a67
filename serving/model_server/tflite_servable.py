"""One loaded TF Lite version (``model.tflite``), run the way TF Serving's TfLiteSession runs it."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc
import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable
from serving.model_server.signatures import DEFAULT_SIGNATURE, PREDICT_METHOD, signature_infos
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


class _Tensor(NamedTuple):
    """An interpreter input or output: its index, TF dtype enum and dims at load."""

    tensor_index: int
    dtype: int
    shape: tuple[int, ...]


def _tensor_map(details: Sequence[Mapping[str, Any]], kind: str) -> dict[str, _Tensor]:
    """GetTensorInfoMap: interpreter tensors by name, with TF Serving's load errors."""
    tensors: dict[str, _Tensor] = {}
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
        tensors[name] = _Tensor(index, dtype_enum, tuple(int(d) for d in detail["shape"]))
    return tensors


def _legacy_name(tf_name: str) -> str:
    """TfToTfLiteLegacyTensorName: early TF Lite converters dropped the ``:0`` suffix."""
    return tf_name.split(":", 1)[0]


def _fix_name(known: Mapping[str, _Tensor], name: str, context: str) -> str:
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
    content: bytes, inputs: Mapping[str, _Tensor], outputs: Mapping[str, _Tensor]
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


def _interpreter(content: bytes) -> Any:
    """A single-threaded tf.lite.Interpreter ("to reduce contention across sessions", as TF
    Serving builds each of its pool)."""
    import tensorflow as tf

    with warnings.catch_warnings():  # TF 2.21 warns that tf.lite moves to ai_edge_litert
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        try:
            return tf.lite.Interpreter(model_content=content, num_threads=1)
        except ValueError:
            raise ServingError.invalid_argument("Cannot build FlatBufferModel from buffer.") from None


class _Slot:
    """One pooled interpreter and the input dims it is allocated for (None: to redo)."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self._call(interpreter.allocate_tensors, "Failed to allocate tensors")
        self.dims: dict[int, tuple[int, ...] | None] = {
            int(d["index"]): tuple(int(s) for s in d["shape"]) for d in interpreter.get_input_details()
        }

    @staticmethod
    def _call(step: Callable[[], object], message: str) -> None:
        try:
            step()
        except (RuntimeError, ValueError):  # TF Lite's own text went to its error reporter
            raise ServingError.internal(message) from None

    def feed(self, index: int, name: str, value: np.ndarray) -> None:
        """SetInputAndInvokeMiniBatch's input step: resize to the request's dims, then copy."""
        dims = self.dims[index]
        if dims != value.shape:
            before = int(np.prod(dims)) * value.itemsize if dims is not None else 0
            self.dims[index] = None
            self._call(
                lambda: self.interpreter.resize_tensor_input(index, list(value.shape)),
                f"Failed to resize input tensor: {name} from {before} to {value.nbytes} bytes.",
            )
            self._call(self.interpreter.allocate_tensors, "Failed to allocate tensors")
            self.dims[index] = value.shape
        try:
            self.interpreter.set_tensor(index, value)
        except ValueError as exc:
            raise ServingError.invalid_argument(str(exc)) from None

    def invoke(self) -> None:
        self._call(self.interpreter.invoke, "Failed to invoke TfLite interpreter")


class _InterpreterPool:
    """TfLiteInterpreterPool: at most ``size`` runs at once, each on an idle interpreter.

    Interpreters are built on first need (TF Serving builds all at load; with
    ``--num_tflite_pools`` defaulting to the CPU count, most would never run).
    """

    def __init__(self, build: Callable[[], _Slot], first: _Slot, size: int) -> None:
        self._build = build
        self._idle = [first]
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def slot(self) -> Iterator[_Slot]:
        """An interpreter for one run; it goes back to the pool however the run ends."""
        with self._free:
            with self._lock:
                taken = self._idle.pop() if self._idle else None
            if taken is None:
                taken = self._build()
            try:
                yield taken
            finally:
                with self._lock:
                    if not self._closed:
                        self._idle.append(taken)

    def close(self) -> None:
        """Drop the idle interpreters; ones still running are dropped when they finish."""
        with self._lock:
            self._closed = True
            self._idle.clear()


class TfLiteRuntime:
    """The runtime protocol of :class:`Servable` (feed_dtype, run, close) over an interpreter pool."""

    def __init__(self, content: bytes, num_interpreters: int) -> None:
        first = _interpreter(content)
        self.inputs = _tensor_map(first.get_input_details(), "Input")
        self.outputs = _tensor_map(first.get_output_details(), "Output")
        self._pool = _InterpreterPool(
            lambda: _Slot(_interpreter(content)), _Slot(first), max(1, num_interpreters)
        )

    def feed_dtype(self, tensor_name: str, recorded: int) -> int:
        """The interpreter's dtype: TF Serving copies request bytes unchecked, so a dtype
        other than the tensor's is refused (with the Servable's text) instead."""
        tensor = self.inputs.get(tensor_name)
        return tensor.dtype if tensor is not None else recorded

    def run(
        self,
        signature_key: str,
        feeds: Mapping[str, tuple[str, np.ndarray]],
        fetches: Sequence[tuple[str, str]],
        timeout_ms: int = 0,
    ) -> list[np.ndarray]:
        """Feed inputs in interpreter index order, invoke, copy the fetched outputs.

        ``timeout_ms`` is accepted and unused: TfLiteSession ignores RunOptions (the Servable
        still refuses a request whose deadline has passed before the run).
        """
        ordered = sorted(feeds.values(), key=lambda feed: self.inputs[feed[0]].tensor_index)
        with self._pool.slot() as slot:
            for name, value in ordered:
                slot.feed(self.inputs[name].tensor_index, name, value)
            slot.invoke()
            return [slot.interpreter.get_tensor(self.outputs[name].tensor_index) for _, name in fetches]

    def close(self) -> None:
        self._pool.close()


class TfLiteServable(Servable):
    """A version served from ``model.tflite`` (``--prefer_tflite_model``).

    It is a Servable whose runtime is a pool of TF Lite interpreters, so Predict, Classify,
    Regress, MultiInference, metadata and the batcher take the SavedModel paths with their
    checks and texts; only loading, the SignatureDefs and the run differ (tflite_session.cc).

    Args:
        name: model name the servable is served under.
        version: its numeric version.
        path: the version directory holding ``model.tflite``.
        check_method_name: TF Serving's ``--enable_signature_method_name_check``.
        num_interpreters: the pool size, TF Serving's ``--num_tflite_pools`` (at least 1).
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str | Path,
        *,
        check_method_name: bool = False,
        num_interpreters: int = 1,
    ) -> None:
        from tensorflow.core.protobuf import meta_graph_pb2

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self.check_method_name = check_method_name
        model_file = self.path / TFLITE_MODEL_FILENAME
        try:
            content = model_file.read_bytes()
        except OSError as exc:
            raise ServingError.not_found(f"{model_file}; {exc.strerror}") from None
        runtime = TfLiteRuntime(content, num_interpreters)
        self.meta_graph = meta_graph_pb2.MetaGraphDef()
        for key, signature in signature_defs(content, runtime.inputs, runtime.outputs).items():
            self.meta_graph.signature_def[key].CopyFrom(signature)
        self._runtime = runtime  # type: ignore[assignment]
        self.signatures = signature_infos(self.meta_graph)
        self._defaults = {key: {} for key in self.signatures}  # TF Lite SignatureDefs have none
        self._feed_dtypes = {
            info.tensor_name: runtime.feed_dtype(info.tensor_name, info.dtype)
            for sig in self.signatures.values()
            for info in sig.inputs.values()
        }
        self._plans = {}
        self._closed = False

    @property
    def is_tf2(self) -> bool:
        """TF Lite runs neither a Session nor TF2 functions."""
        return False

    def run_tensors(
        self, feed_names: Sequence[str], fetch_names: Sequence[str], feeds: Sequence[np.ndarray]
    ) -> list[Any] | None:
        """None: MultiInference runs one signature at a time, as for TF2 functions."""
        if self._closed:
            raise ServingError.unavailable(f"Servable {self.name} version {self.version} is unloaded")
        return None

    def close(self) -> None:
        """Release the interpreters (the unload step)."""
        self._closed = True
        self._runtime.close()

    def __repr__(self) -> str:
        return f"TfLiteServable({self.name!r}, {self.version}, {str(self.path)!r})"

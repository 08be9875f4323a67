"""One loaded TF Lite version (``model.tflite``), run the way TF Serving's TfLiteSession runs it."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable
from serving.model_server.signatures import signature_infos
from serving.model_server.tflite_signatures import TFLITE_MODEL_FILENAME, signature_defs, tensor_map

if TYPE_CHECKING:
    pass


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
        self.inputs = tensor_map(first.get_input_details(), "Input")
        self.outputs = tensor_map(first.get_output_details(), "Output")
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

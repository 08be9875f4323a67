"""One loaded SavedModel version, run the way TF Serving runs it: a Session over the MetaGraphDef."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.predict_checks import check_input_names, output_aliases
from serving.model_server.runtime import (
    SERVING_TAG,
    FunctionRuntime,
    SessionRuntime,
    is_tf2,
    load_tf2_runtime,
    timeout_bucket_ms,
)
from serving.model_server.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SignatureInfo,
    dtype_enum,
    read_meta_graph,
    signature_infos,
)
from serving.model_server.tensors import DT, TensorConversionError, dtype_name, numpy_dtype

# Distinct (signature, input names, output filter) plans a servable remembers (bounded, as
# request names are client-chosen).
_MAX_PLANS = 256


def _unchecked_dtype(dtype: int) -> np.dtype | None:
    """The numpy dtype an array of a TF dtype arrives in from decoding (it needs no dtype check)."""
    try:
        return numpy_dtype(dtype)
    except TensorConversionError:
        return None


class Servable:
    """A SavedModel version loaded into its own graph and Session.

    TF Serving runs every SavedModel (TF1 or TF2) through a Session over the MetaGraphDef, so
    the signature view, the lenient shape handling (no check of request shapes against the
    declared ones) and the stateful behaviour match it exactly. Each distinct (feeds, fetches)
    combination is compiled once into a Session callable and reused, so a call costs tens of
    microseconds of overhead.

    Args:
        name: model name the servable is served under.
        version: its numeric version.
        path: the version directory holding ``saved_model.pb``.
        check_method_name: TF Serving's ``--enable_signature_method_name_check`` (off by default,
            which lets TF2 models serve classify/regress from predict-method signatures).
        session_config: an optional ``tf.compat.v1.ConfigProto``.
        tags: the meta graph's tag set (``--saved_model_tags``, TF Serving's default "serve").
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str | Path,
        *,
        check_method_name: bool = False,
        session_config: Any = None,
        tags: Sequence[str] = (SERVING_TAG,),
    ) -> None:
        import tensorflow as tf

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self.check_method_name = check_method_name
        self.meta_graph = read_meta_graph(self.path, tags)
        try:
            self._runtime: SessionRuntime | FunctionRuntime = (
                load_tf2_runtime(self.path, session_config, tags)
                if is_tf2(self.meta_graph)
                else SessionRuntime(self.path, session_config, tags)
            )
        except Exception as exc:  # TF raises many types here; all mean "did not load".
            message = getattr(exc, "message", None) or str(exc)
            raise ServingError.unknown(f"Failed to load SavedModel at {self.path}: {message}") from exc
        self.signatures: dict[str, SignatureInfo] = signature_infos(self.meta_graph)
        self._defaults: dict[str, dict[str, np.ndarray]] = {
            key: {alias: tf.make_ndarray(proto) for alias, proto in sig.defaults.items()}
            for key, sig in self.meta_graph.signature_def.items()
        }
        self._feed_dtypes: dict[str, int] = {}
        for sig in self.signatures.values():
            for info in sig.inputs.values():
                self._feed_dtypes.setdefault(
                    info.tensor_name, self._runtime.feed_dtype(info.tensor_name, info.dtype)
                )
        self._plans: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Any] = {}
        self._closed = False
        # Unloading drops the manager's reference; requests still holding this version finish
        # on it, and the Session closes when the last of them lets go (TF Serving quiesces a
        # version before unloading it). close() runs the same finalizer at once.
        self._finalizer = weakref.finalize(self, self._runtime.close)

    @property
    def is_tf2(self) -> bool:
        """Whether the version runs as TF2 concrete functions rather than a Session."""
        return isinstance(self._runtime, FunctionRuntime)

    def signature_def_map(self) -> dict[str, Any]:
        """Every SignatureDef proto of the MetaGraphDef, for GetModelMetadata."""
        return dict(self.meta_graph.signature_def.items())

    def signature(self, signature_name: str) -> tuple[str, SignatureInfo]:
        """The resolved name and info of a signature; '' means ``serving_default``.

        Raises:
            ServingError: FAILED_PRECONDITION with TF Serving's Predict text when it is absent.
        """
        key = signature_name or DEFAULT_SIGNATURE
        info = self.signatures.get(key)
        if info is None:
            raise ServingError.failed_precondition(f'Serving signature key "{key}" not found.')
        return key, info

    def run(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run a signature as TF Serving's Predict does and return outputs by alias.

        Validation follows predict_util.cc and saved_model/util.cc, in that order and with
        their texts: input count, missing inputs without defaults, unknown input names,
        output_filter aliases, then the fed dtypes. ``deadline`` (``time.monotonic()``) is the
        request's: an expired request is not run, and a Session run gets the time left as its
        RunOptions timeout.

        Raises:
            ServingError: FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for
                bad inputs or filters, DEADLINE_EXCEEDED past the deadline, or the TensorFlow
                runtime's own code and message.
        """
        key, feeds, fetches = self.prepare(signature_name, inputs, output_filter)
        return self.run_prepared(key, feeds, fetches, deadline)

    def run_prepared(
        self,
        key: str,
        feeds: dict[str, tuple[str, np.ndarray]],
        fetches: list[tuple[str, str]],
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run what :meth:`prepare` returned (the batcher prepares before queueing)."""
        if self._closed:
            raise ServingError.unavailable(f"Servable {self.name} version {self.version} is unloaded")
        timeout_ms = 0
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")
            timeout_ms = timeout_bucket_ms(remaining)
        results = self._runtime.run(key, feeds, fetches, timeout_ms)
        return {alias: np.asarray(value) for (alias, _), value in zip(fetches, results, strict=True)}

    def prepare(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> tuple[str, dict[str, tuple[str, np.ndarray]], list[tuple[str, str]]]:
        """All of run()'s request checks, without running: (signature key, feeds, fetches).

        The batcher calls this before queueing so that one bad request never fails a batch.
        ``feeds`` maps alias -> (tensor name, array, defaults filled in); ``fetches`` lists
        (alias, tensor name) in output order.
        """
        plan_key = (signature_name, tuple(inputs), tuple(output_filter))
        plan = self._plans.get(plan_key)
        if plan is None:
            plan = self._plan(signature_name, inputs, output_filter)
            if len(self._plans) < _MAX_PLANS:
                self._plans[plan_key] = plan
        key, feed_plan, fetches = plan
        feeds: dict[str, tuple[str, np.ndarray]] = {}
        for index, alias, tensor_name, default, expected in feed_plan:
            value = inputs[alias] if default is None else default
            if getattr(value, "dtype", None) is not expected:  # numpy's builtin dtypes are singletons
                value = self._check_dtype(index, tensor_name, np.asarray(value))
            feeds[alias] = (tensor_name, value)
        return key, feeds, fetches

    def _plan(
        self, signature_name: str, inputs: Mapping[str, Any], output_filter: Sequence[str]
    ) -> tuple[str, list[tuple[int, str, str, np.ndarray | None, np.dtype | None]], list[tuple[str, str]]]:
        """The checks of prepare() that depend only on names, and what they resolve to.

        They come first in TF Serving's order (only dtypes are checked after them), so their
        outcome for one (signature, input names, output filter) can be reused by every
        request with the same names: a Predict saves ~10 us of Python on the GIL.
        Returns (signature key, [(index, alias, tensor name, default to feed or None, the numpy
        dtype that needs no check)], fetches).
        """
        key, sig = self.signature(signature_name)
        if self.check_method_name and sig.method_name not in (
            PREDICT_METHOD,
            CLASSIFY_METHOD,
            REGRESS_METHOD,
        ):
            raise ServingError.internal(
                "Expected prediction signature method_name to be one of {"
                f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {sig.method_name}"
            )
        defaults = self._defaults[key]
        check_input_names(sig, inputs, defaults)
        aliases = output_aliases(sig, output_filter)
        feed_plan = []
        for index, alias in enumerate(sorted(sig.inputs)):
            tensor_name = sig.inputs[alias].tensor_name
            default = None if alias in inputs else defaults[alias]
            feed_plan.append(
                (index, alias, tensor_name, default, _unchecked_dtype(self._feed_dtypes[tensor_name]))
            )
        fetches = [(alias, sig.outputs[alias].tensor_name) for alias in aliases]
        return key, feed_plan, fetches

    def _check_dtype(self, index: int, tensor_name: str, value: np.ndarray) -> np.ndarray:
        expected = self._feed_dtypes.get(tensor_name, -1)
        got = dtype_enum(value)
        if expected != -1 and got != expected:
            raise ServingError.invalid_argument(
                f"Expects arg[{index}] to be {dtype_name(expected)} but {dtype_name(got)} is provided"
            )
        if got == DT.DT_STRING and value.dtype.kind == "U":
            value = np.char.encode(value, "utf-8").astype(object)
        return value

    def run_tensors(
        self, feed_names: Sequence[str], fetch_names: Sequence[str], feeds: Sequence[np.ndarray]
    ) -> list[Any] | None:
        """Run graph tensors directly (one Session run for several signatures); None for TF2.

        Raises:
            ServingError: with the TensorFlow runtime's status code and message.
        """
        if self._closed:
            raise ServingError.unavailable(f"Servable {self.name} version {self.version} is unloaded")
        if isinstance(self._runtime, SessionRuntime):
            return self._runtime.run_tensors(feed_names, fetch_names, feeds)
        return None

    def close(self) -> None:
        """Release the Session or loaded functions (the unload step)."""
        self._closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, {self.version}, {str(self.path)!r})"


# A callable with Servable.run's contract after the servable argument: Batcher.run or DirectRunner.run.
Runner = Callable[[Servable, str, Mapping[str, np.ndarray], Sequence[str]], dict[str, np.ndarray]]


class DirectRunner:
    """The runner used without --enable_batching: calls Servable.run directly."""

    def run(
        self,
        servable: Servable,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Same contract as :meth:`Servable.run`."""
        return servable.run(signature_name, inputs, output_filter, deadline=deadline)

    def stop(self) -> None:
        """Nothing to stop; present so a manager can stop any runner."""

"""One loaded SavedModel version, run the way TF Serving runs it: a Session over the MetaGraphDef."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.runtime import (
    FunctionRuntime,
    SessionRuntime,
    is_tf2,
    load_tf2_runtime,
)
from serving.model_server.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    SignatureInfo,
    dtype_enum,
    read_meta_graph,
    tensor_info,
)
from serving.model_server.tensors import DT, TensorConversionError, dtype_name, numpy_dtype

if TYPE_CHECKING:
    from tensorflow_serving.apis import (
        classification_pb2,
        inference_pb2,
        input_pb2,
        regression_pb2,
    )

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
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str | Path,
        *,
        check_method_name: bool = False,
        session_config: Any = None,
    ) -> None:
        import tensorflow as tf

        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self.check_method_name = check_method_name
        self.meta_graph = read_meta_graph(self.path)
        try:
            self._runtime: SessionRuntime | FunctionRuntime = (
                load_tf2_runtime(self.path, session_config)
                if is_tf2(self.meta_graph)
                else SessionRuntime(self.path, session_config)
            )
        except Exception as exc:  # TF raises many types here; all mean "did not load".
            message = getattr(exc, "message", None) or str(exc)
            raise ServingError.unknown(f"Failed to load SavedModel at {self.path}: {message}") from exc
        self.signatures: dict[str, SignatureInfo] = {
            key: SignatureInfo(
                sig.method_name,
                {alias: tensor_info(info) for alias, info in sig.inputs.items()},
                {alias: tensor_info(info) for alias, info in sig.outputs.items()},
            )
            for key, sig in self.meta_graph.signature_def.items()
        }
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
    ) -> dict[str, np.ndarray]:
        """Run a signature as TF Serving's Predict does and return outputs by alias.

        Validation follows predict_util.cc and saved_model/util.cc, in that order and with
        their texts: input count, missing inputs without defaults, unknown input names,
        output_filter aliases, then the fed dtypes.

        Raises:
            ServingError: FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for
                bad inputs or filters, or the TensorFlow runtime's own code and message.
        """
        key, feeds, fetches = self.prepare(signature_name, inputs, output_filter)
        if self._closed:
            raise ServingError.unavailable(f"Servable {self.name} version {self.version} is unloaded")
        results = self._runtime.run(key, feeds, fetches)
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
        self._check_input_names(sig, inputs, defaults)
        aliases = self._output_aliases(sig, output_filter)
        feed_plan = []
        for index, alias in enumerate(sorted(sig.inputs)):
            tensor_name = sig.inputs[alias].tensor_name
            default = None if alias in inputs else defaults[alias]
            feed_plan.append(
                (index, alias, tensor_name, default, _unchecked_dtype(self._feed_dtypes[tensor_name]))
            )
        fetches = [(alias, sig.outputs[alias].tensor_name) for alias in aliases]
        return key, feed_plan, fetches

    @staticmethod
    def _check_input_names(
        sig: SignatureInfo, inputs: Mapping[str, np.ndarray], defaults: Mapping[str, np.ndarray]
    ) -> None:
        requested, expected = set(inputs), set(sig.inputs)
        if len(requested) > len(expected) or (len(requested) < len(expected) and not defaults):
            raise ServingError.invalid_argument(
                f"input size does not match signature: {len(requested)}!={len(expected)} "
                f"len({{{','.join(sorted(requested))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(requested - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - requested))}}}."
            )
        for alias in sorted(expected):
            if alias not in requested and alias not in defaults:
                raise ServingError.invalid_argument(
                    f"Signature input alias: {alias}(feed name: {sig.inputs[alias].tensor_name}) not "
                    "found in request and no default value provided. Inputs expected to be in the "
                    f"request {{{','.join(sorted(requested))}}}, or default input alias set: "
                    f"{','.join(sorted(defaults))}"
                )
        if requested - expected:
            raise ServingError.invalid_argument(
                "Inputs contains invalid name. Used request inputs: "
                f"{','.join(sorted(requested & expected))}, request input: {','.join(sorted(requested))}"
            )

    @staticmethod
    def _output_aliases(sig: SignatureInfo, output_filter: Sequence[str]) -> tuple[str, ...]:
        if not output_filter:
            return tuple(sig.outputs)
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in sig.outputs:
                raise ServingError.invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                    f"the set {{{','.join(sorted(sig.outputs))}}}."
                )
            if alias in seen:
                raise ServingError.invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        return tuple(output_filter)

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

    def classify(
        self, signature_name: str, input: input_pb2.Input, run: Runner | None = None
    ) -> classification_pb2.ClassificationResult:
        """TF Serving's Classify on this servable; ``run`` may route through a batcher."""
        from serving.model_server import inference

        return inference.classify(self, signature_name, input, run)

    def regress(
        self, signature_name: str, input: input_pb2.Input, run: Runner | None = None
    ) -> regression_pb2.RegressionResult:
        """TF Serving's Regress on this servable; ``run`` may route through a batcher."""
        from serving.model_server import inference

        return inference.regress(self, signature_name, input, run)

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """TF Serving's MultiInference (one Session run for every task) on this servable."""
        from serving.model_server import inference

        return inference.multi_inference(self, request)

    def close(self) -> None:
        """Release the Session or loaded functions (the unload step)."""
        self._closed = True
        self._runtime.close()

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
    ) -> dict[str, np.ndarray]:
        """Same contract as :meth:`Servable.run`."""
        return servable.run(signature_name, inputs, output_filter)

    def stop(self) -> None:
        """Nothing to stop; present so a manager can stop any runner."""

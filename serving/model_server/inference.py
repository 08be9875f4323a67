"""Classify, Regress and MultiInference: serialized tf.Examples in, TF Serving's result protos out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.servable import Runner, Servable
from serving.model_server.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    SignatureInfo,
    dtype_enum,
)

if TYPE_CHECKING:
    from tensorflow_serving.apis import (
        classification_pb2,
        inference_pb2,
        input_pb2,
        regression_pb2,
    )

_DT_FLOAT = 1
_DT_STRING = 7


def examples_tensor(input: input_pb2.Input) -> np.ndarray:
    """The [N] string tensor TF Serving feeds: each Example serialized, context bytes first.

    Concatenating the serialized context and example is a protobuf merge, which is how TF
    Serving applies ``example_list_with_context`` (example features override the context's).

    Raises:
        ServingError: INVALID_ARGUMENT "Input is empty." when there is no example.
    """
    kind = input.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in input.example_list.examples]
    elif kind == "example_list_with_context":
        context = input.example_list_with_context.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in input.example_list_with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise ServingError.invalid_argument("Input is empty.")
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


def _find_signature(servable: Servable, signature_name: str) -> tuple[str, SignatureInfo]:
    key = signature_name or DEFAULT_SIGNATURE
    sig = servable.signatures.get(key)
    if sig is None:
        raise ServingError.invalid_argument(f"No signature was found with the name: {key}")
    return key, sig


def _debug_string(servable: Servable, key: str) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(servable.meta_graph.signature_def[key])


def _classification_outputs(servable: Servable, key: str, sig: SignatureInfo) -> tuple[str, ...]:
    """PreProcessClassification: one input named ``inputs``; outputs classes and/or scores."""
    if servable.check_method_name and sig.method_name != CLASSIFY_METHOD:
        raise ServingError.invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {sig.method_name}"
        )
    if len(sig.inputs) != 1:
        raise ServingError.invalid_argument("Expected one input Tensor.")
    if len(sig.outputs) not in (1, 2):
        raise ServingError.invalid_argument(f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if "inputs" not in sig.inputs:
        raise ServingError.failed_precondition(
            f"No classification inputs found in SignatureDef: {_debug_string(servable, key)}"
        )
    outputs = tuple(a for a in ("classes", "scores") if a in sig.outputs)
    if not outputs:
        raise ServingError.failed_precondition(
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature was: {_debug_string(servable, key)}'
        )
    return outputs


def _regression_outputs(servable: Servable, key: str, sig: SignatureInfo) -> tuple[str, ...]:
    """PreProcessRegression: one input named ``inputs``, one output named ``outputs``."""
    if servable.check_method_name and sig.method_name != REGRESS_METHOD:
        raise ServingError.invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. Was: {sig.method_name}"
        )
    if len(sig.inputs) != 1:
        raise ServingError.invalid_argument("Expected one input Tensor.")
    if len(sig.outputs) != 1:
        raise ServingError.invalid_argument("Expected one output Tensor.")
    if "inputs" not in sig.inputs:
        raise ServingError.failed_precondition(
            f"No regression inputs found in SignatureDef: {_debug_string(servable, key)}"
        )
    if "outputs" not in sig.outputs:
        raise ServingError.failed_precondition(
            f"No regression outputs found in SignatureDef: {_debug_string(servable, key)}"
        )
    return ("outputs",)


def _shape(array: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _dt_name(array: np.ndarray) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(dtype_enum(array))


def _fill_classification(
    outputs: Mapping[str, np.ndarray], num_examples: int, result: classification_pb2.ClassificationResult
) -> None:
    """PostProcessClassificationResult: [batch, num_classes] classes (string) and scores (float)."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for label, tensor, dt in (("classes", classes, _DT_STRING), ("scores", scores, _DT_FLOAT)):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise ServingError.invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape(tensor)}"
            )
        if dtype_enum(tensor) != dt:
            wanted = "DT_STRING" if dt == _DT_STRING else "DT_FLOAT"
            raise ServingError.invalid_argument(
                f"Expected {label} Tensor of {wanted}. Got: {_dt_name(tensor)}"
            )
        if tensor.shape[0] != num_examples:
            raise ServingError.invalid_argument(
                f"Expected {label} output batch size of {num_examples}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError.invalid_argument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for i in range(num_examples):
        row = result.classifications.add()
        for c in range(num_classes):
            cls = row.classes.add()
            if classes is not None:
                cls.label = classes[i, c].decode() if isinstance(classes[i, c], bytes) else str(classes[i, c])
            if scores is not None:
                cls.score = float(scores[i, c])


def _fill_regression(output: np.ndarray, num_examples: int, result: regression_pb2.RegressionResult) -> None:
    """PostProcessRegressionResult: a [batch] or [batch, 1] float tensor."""
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise ServingError.invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{_shape(output)}"
        )
    if output.shape[0] != num_examples:
        raise ServingError.invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {output.shape[0]}"
        )
    if output.dtype != np.float32:
        raise ServingError.internal(f"Expected output Tensor of DT_FLOAT.  Got: {_dt_name(output)}")
    for value in output.reshape(-1):
        result.regressions.add().value = float(value)


def _run_examples(
    servable: Servable,
    signature_name: str,
    input: input_pb2.Input,
    run: Runner | None,
    outputs_for: Callable[[Servable, str, SignatureInfo], tuple[str, ...]],
) -> tuple[dict[str, np.ndarray], int]:
    """Classify and Regress alike: check the signature, run the examples; outputs and batch size."""
    key, sig = _find_signature(servable, signature_name)
    wanted = outputs_for(servable, key, sig)
    tensor = examples_tensor(input)
    if run is None:
        outputs = servable.run(key, {"inputs": tensor}, wanted)
    else:
        outputs = run(servable, key, {"inputs": tensor}, wanted)
    return outputs, len(tensor)


def classify(
    servable: Servable, signature_name: str, input: input_pb2.Input, run: Runner | None = None
) -> classification_pb2.ClassificationResult:
    """Run a classification signature on the request's examples (TF Serving's Classify)."""
    from tensorflow_serving.apis import classification_pb2

    outputs, num_examples = _run_examples(servable, signature_name, input, run, _classification_outputs)
    result = classification_pb2.ClassificationResult()
    _fill_classification(outputs, num_examples, result)
    return result


def regress(
    servable: Servable, signature_name: str, input: input_pb2.Input, run: Runner | None = None
) -> regression_pb2.RegressionResult:
    """Run a regression signature on the request's examples (TF Serving's Regress)."""
    from tensorflow_serving.apis import regression_pb2

    outputs, num_examples = _run_examples(servable, signature_name, input, run, _regression_outputs)
    result = regression_pb2.RegressionResult()
    _fill_regression(outputs["outputs"], num_examples, result)
    return result


def multi_inference(
    servable: Servable, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
    """Every task's signature in one Session run over the shared examples (multi_inference.cc)."""
    from tensorflow_serving.apis import inference_pb2

    if not request.tasks:
        raise ServingError.invalid_argument("Expected at least one task")
    model_name = ""
    input_tensor_names: set[str] = set()
    seen: set[str] = set()
    plan: list[tuple[Any, str, SignatureInfo, tuple[str, ...]]] = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise ServingError.invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif model_name != task.model_spec.name:
            raise ServingError.invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        key = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if key in seen:
            raise ServingError.invalid_argument(f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        sig = servable.signatures.get(key)
        if sig is None:
            raise ServingError.invalid_argument(f"Requested signature not found in model graph: {key}")
        if task.method_name == CLASSIFY_METHOD:
            wanted = _classification_outputs(servable, key, sig)
        elif task.method_name == REGRESS_METHOD:
            wanted = _regression_outputs(servable, key, sig)
        else:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}"
            )
        # Each signature may read the examples from its own input tensor: one run feeds the
        # same serialized examples to all of them (multi_inference.cc since 2020).
        input_tensor_names.add(sig.inputs["inputs"].tensor_name)
        plan.append((task, key, sig, wanted))
    tensor = examples_tensor(request.input)
    fetches = sorted({sig.outputs[a].tensor_name for _, _, sig, wanted in plan for a in wanted})
    feeds = sorted(input_tensor_names)
    flat = servable.run_tensors(feeds, fetches, [tensor] * len(feeds))
    if flat is None:  # TF2 functions: one call per signature
        values = {}
        for _, key, sig, wanted in plan:
            outs = servable.run(key, {"inputs": tensor}, wanted)
            values.update({sig.outputs[a].tensor_name: outs[a] for a in wanted})
    else:
        values = dict(zip(fetches, flat, strict=True))
    response = inference_pb2.MultiInferenceResponse()
    for task, _key, sig, wanted in plan:
        result = response.results.add()
        outputs = {a: np.asarray(values[sig.outputs[a].tensor_name]) for a in wanted}
        if task.method_name == CLASSIFY_METHOD:
            _fill_classification(outputs, len(tensor), result.classification_result)
        else:
            _fill_regression(outputs["outputs"], len(tensor), result.regression_result)
        result.model_spec.name = task.model_spec.name
        result.model_spec.signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        result.model_spec.version.value = servable.version
    return response

"""TF Serving's API logic, request proto -> response proto, shared by the gRPC and REST faces."""

# The `handle_*` functions hold TF Serving's checks and texts (predict_impl.cc,
# classification_service.cc, regression_service.cc, multi_inference, get_model_metadata_impl.cc,
# get_model_status_impl.cc, model_service_impl.cc); the REST face reuses them for everything
# but predict, as TF Serving's HTTP handler does. Transport concerns (status codes on the wire,
# deadlines, metrics) stay in the faces.

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.model_server import config_rules, inference, tensor_limits
from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable
from serving.model_server.signatures import DEFAULT_SIGNATURE
from serving.model_server.tensors import TensorTooLargeError, from_ndarray, to_ndarray

SIGNATURE_DEF_FIELD = "signature_def"


def servable_for(manager: Any, model_spec: Any) -> Servable:
    """The servable a ModelSpec selects (version, version_label, else the latest)."""
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return manager.get_servable(model_spec.name, version=model_spec.version.value)
    if choice == "version_label":
        return manager.get_servable(model_spec.name, label=model_spec.version_label)
    return manager.get_servable(model_spec.name)


def _require_spec(request: Any) -> None:
    if not request.HasField("model_spec"):
        raise ServingError.invalid_argument("Missing ModelSpec")


def _fill_spec(target: Any, name: str, signature_name: str | None, version: int) -> None:
    """util.cc MakeModelSpec: name, signature ('' -> serving_default) and version."""
    target.name = name
    if signature_name is not None:
        target.signature_name = signature_name or DEFAULT_SIGNATURE
    target.version.value = version


def request_arrays(
    servable: Servable, signature_name: str, request: Any, max_bytes: int | None = None
) -> dict[str, np.ndarray]:
    """A PredictRequest's tensors as arrays; a bad TensorProto is TF's "tensor parsing error".

    As GetInputValues does, only the signature's inputs are parsed: an alias the signature
    does not have gets an empty array, and the run names it. With ``max_bytes`` (the
    --max_request_tensor_bytes budget), tensors whose values the wire carried are decoded
    first (a string tensor counts the bytes its proto takes, a few more than its strings);
    those TF's rules would pad or fill are sized without allocating, and built only once the
    request's total is known to fit. The result is ``CheckedInputs``: the runner does not
    count it again.

    Raises:
        ServingError: INVALID_ARGUMENT "tensor parsing error: <alias>", or the budget's error.
    """
    known = servable.signatures.get(signature_name or DEFAULT_SIGNATURE)
    signature_inputs = known.inputs if known is not None else None
    inputs: dict[str, np.ndarray] = tensor_limits.CheckedInputs()
    protos = request.inputs
    sizing = None if max_bytes is None else 0  # to_ndarray(proto, 0) sizes what it would pad
    deferred: list[tuple[str, int]] = []
    used = 0
    for alias in protos:  # keys, then lookups: the map's items() view is a Python generator
        if signature_inputs is not None and alias not in signature_inputs:
            inputs[alias] = np.zeros(0, dtype=np.float32)  # unknown alias: run() names it
            continue
        proto = protos[alias]
        try:
            array = inputs[alias] = to_ndarray(proto, sizing)
        except TensorTooLargeError as exc:
            deferred.append((alias, exc.needed))
            continue
        except (ValueError, OverflowError):  # TensorConversionError, and numpy's own refusals
            raise _parsing_error(alias) from None
        if max_bytes is not None:
            used += array.nbytes + (proto.ByteSize() if array.dtype is _OBJECT else 0)
            if used > max_bytes:
                raise tensor_limits.over_budget(alias, used, max_bytes)
    if deferred:
        for alias, needed in deferred:
            used += needed
            if max_bytes is not None and used > max_bytes:
                raise tensor_limits.over_budget(alias, used, max_bytes)
        for alias, _ in deferred:
            try:
                inputs[alias] = to_ndarray(protos[alias])
            except (ValueError, OverflowError):
                raise _parsing_error(alias) from None
    return inputs


_OBJECT = np.dtype(object)


def _parsing_error(alias: str) -> ServingError:
    return ServingError.invalid_argument(f"tensor parsing error: {tensor_limits.quote(alias)}")


def _runner(manager: Any, deadline: float | None) -> Any:
    """The manager's runner, with the request's deadline bound when there is one."""
    if deadline is None:
        return manager.runner.run
    return functools.partial(manager.runner.run, deadline=deadline)


def handle_predict(
    manager: Any, request: predict_pb2.PredictRequest, deadline: float | None = None
) -> predict_pb2.PredictResponse:
    """TensorflowPredictor::Predict through the manager's runner (batcher or direct).

    ``deadline`` (``time.monotonic()``): the gRPC deadline or the REST timeout, passed into
    the run as TF Serving passes it into RunOptions.
    """
    servable, signature_name, inputs = predict_inputs(manager, request)
    outputs = _runner(manager, deadline)(servable, signature_name, inputs, tuple(request.output_filter))
    return predict_response(request, servable, signature_name, outputs)


def predict_inputs(manager: Any, request: Any) -> tuple[Servable, str, dict[str, np.ndarray]]:
    """Predict's checks before the run: spec, servable, signature, tensors."""
    _require_spec(request)
    servable = servable_for(manager, request.model_spec)
    signature_name = request.model_spec.signature_name
    servable.signature(signature_name)
    limit = manager.max_request_tensor_bytes
    return servable, signature_name, request_arrays(servable, signature_name, request, limit)


def predict_response(
    request: Any, servable: Servable, signature_name: str, outputs: dict[str, np.ndarray]
) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    _fill_spec(
        response.model_spec, request.model_spec.name, signature_name or DEFAULT_SIGNATURE, servable.version
    )
    for alias, value in outputs.items():
        from_ndarray(value, out=response.outputs[alias])
    return response


def handle_classify(
    manager: Any, request: classification_pb2.ClassificationRequest, deadline: float | None = None
) -> classification_pb2.ClassificationResponse:
    """TensorflowClassificationServiceImpl::Classify."""
    return _run_examples(manager, request, "classify", classification_pb2.ClassificationResponse(), deadline)


def handle_regress(
    manager: Any, request: regression_pb2.RegressionRequest, deadline: float | None = None
) -> regression_pb2.RegressionResponse:
    """TensorflowRegressionServiceImpl::Regress."""
    return _run_examples(manager, request, "regress", regression_pb2.RegressionResponse(), deadline)


def _run_examples(manager: Any, request: Any, method: str, response: Any, deadline: float | None) -> Any:
    """Classify and Regress differ only in the servable method and the response type."""
    _require_spec(request)
    servable = servable_for(manager, request.model_spec)
    signature_name = request.model_spec.signature_name
    run_method = inference.classify if method == "classify" else inference.regress
    result = run_method(servable, signature_name, request.input, run=_runner(manager, deadline))
    response.result.CopyFrom(result)
    _fill_spec(response.model_spec, request.model_spec.name, signature_name, servable.version)
    return response


def handle_multi_inference(
    manager: Any, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
    """RunMultiInferenceWithServerCore: the first task's model_spec selects the servable."""
    if not request.tasks:
        raise ServingError.invalid_argument("Expected at least one task")
    servable = servable_for(manager, request.tasks[0].model_spec)
    return inference.multi_inference(servable, request)


def handle_metadata(
    manager: Any, request: get_model_metadata_pb2.GetModelMetadataRequest
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadataImpl: only the "signature_def" field exists."""
    _require_spec(request)
    if not request.metadata_field:
        raise ServingError.invalid_argument(
            "GetModelMetadataRequest must specify at least one metadata_field"
        )
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            # TF Serving builds this text with StrCat, so the "%s" is literally in it.
            raise ServingError.invalid_argument(f"Metadata field %s is not supported{field}")
    servable = servable_for(manager, request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_def_map().items():
        signature_map.signature_def[key].CopyFrom(signature)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


def handle_status(
    manager: Any, request: get_model_status_pb2.GetModelStatusRequest
) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusImpl: one version when asked for, else all (labels are not consulted)."""
    _require_spec(request)
    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    response = get_model_status_pb2.GetModelStatusResponse()
    for state in manager.status(spec.name, version):
        entry = response.model_version_status.add()
        entry.version = state.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
        entry.status.error_code = state.error_code.value[0]
        entry.status.error_message = state.error_message
    return response


def handle_reload(
    manager: Any, request: model_management_pb2.ReloadConfigRequest
) -> model_management_pb2.ReloadConfigResponse:
    """ModelServiceImpl::HandleReloadConfigRequest (only model_config_list is supported).

    Ours: base paths outside the manager's ``reload_roots`` are PERMISSION_DENIED (a SavedModel
    runs code when it loads, and this call has no authentication).
    """
    if request.config.WhichOneof("config") != "model_config_list":
        raise ServingError.invalid_argument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported"
        )
    if manager.reload_roots is not None:  # ours: the API loads only under the operator's roots
        config_rules.check_reload_roots(request.config, manager.reload_roots)
    manager.reload_config(request.config)
    response = model_management_pb2.ReloadConfigResponse()
    response.status.error_code = 0
    return response

"""The gRPC face over a real channel: every RPC, TF Serving's codes and messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.model_server import grpc_inline
from serving.model_server.config import ServerOptions
from serving.model_server.grpc_service import create_grpc_server, grpc_message, parse_channel_arguments
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray, to_ndarray

MODEL = "half_plus_two"


@pytest.fixture(scope="module", params=["inline", "stock", "batching-inline", "batching-stock"])
def server(tfserving_testdata: Path, request: pytest.FixtureRequest) -> Iterator[ModelServer]:
    """Every gRPC test runs against each server, with batching off and on: the inline server
    (the default) and grpc.server (its fallback where grpc lacks the core API the inline
    server uses)."""
    options = ServerOptions(
        enable_batching=request.param.startswith("batching"),
        port=0,
        bind_address="127.0.0.1",
        model_name=MODEL,
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        grpc_channel_arguments="grpc.max_concurrent_streams=64",
    )
    with pytest.MonkeyPatch.context() as patch:
        stock = request.param.endswith("stock")
        if stock:
            patch.setattr(grpc_inline, "available", lambda: False)
        with ModelServer(options) as running:
            assert running._grpc_server.face == ("stock" if stock else "inline")
            yield running


@pytest.fixture(scope="module")
def channel(server: ModelServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(x: np.ndarray, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", MODEL)
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].CopyFrom(from_ndarray(x))
    return request


def example(x: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))})
    )


def test_predict_values_and_response_model_spec(stub) -> None:
    response = stub.Predict(predict_request(np.array([[1.0], [2.0], [5.0]], np.float32)), timeout=30)
    assert to_ndarray(response.outputs["y"]).tolist() == [[2.5], [3.0], [4.5]]
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]  # AsProtoField layout
    assert response.model_spec.name == MODEL
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 123


def test_predict_accepts_tensor_content_from_make_tensor_proto(stub) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 123
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[4.0], [6.0], [0.0]], np.float32)))
    assert request.inputs["x"].tensor_content  # the other encoding clients use
    response = stub.Predict(request, timeout=30)
    assert to_ndarray(response.outputs["y"]).tolist() == [[4.0], [5.0], [2.0]]


def test_predict_output_filter(stub) -> None:
    request = predict_request(np.array([[2.0]], np.float32))
    request.output_filter.append("y")
    assert list(stub.Predict(request, timeout=30).outputs) == ["y"]
    request.output_filter.append("nope")
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        info.value.details()
        == "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."
    )


@pytest.mark.parametrize(
    ("mutate", "code", "details"),
    [
        (
            lambda r: setattr(r.model_spec, "name", "missing"),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(missing)",
        ),
        (
            lambda r: r.model_spec.version.__setattr__("value", 9),
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(half_plus_two, 9)",
        ),
        (
            lambda r: setattr(r.model_spec, "signature_name", "sig"),
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "sig" not found.',
        ),
        (
            lambda r: setattr(r.model_spec, "version_label", "canary"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: canary",
        ),
        (lambda r: r.ClearField("model_spec"), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        (
            lambda r: r.inputs["x"].CopyFrom(from_ndarray(np.array([[1]], np.int64))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but int64 is provided",
        ),
        (
            lambda r: r.inputs["x"].tensor_shape.dim.add(size=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tensor parsing error: x",
        ),
    ],
)
def test_predict_errors(stub, mutate, code, details) -> None:
    request = predict_request(np.array([[1.0]], np.float32))
    if "tensor parsing" in details:
        request.inputs["x"].tensor_content = np.zeros(2, np.float32).tobytes()
        request.inputs["x"].ClearField("float_val")
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert (info.value.code(), info.value.details()) == (code, details)


def test_predict_bad_input_name(stub) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["z"].CopyFrom(from_ndarray(np.array([1.0], np.float32)))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("Signature input alias: x(feed name: x:0) not found in request")


def test_classify_regress_and_multi_inference(stub) -> None:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend([example(2.0), example(4.0)])
    response = stub.Classify(request, timeout=30)
    scores = [c.classes[0].score for c in response.result.classifications]
    assert scores == [3.0, 4.0]
    assert (response.model_spec.signature_name, response.model_spec.version.value) == ("classify_x_to_y", 123)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = MODEL
    regress.model_spec.signature_name = "regress_x_to_y2"
    regress.input.example_list.examples.append(example(2.0))
    assert [r.value for r in stub.Regress(regress, timeout=30).result.regressions] == [4.0]  # 0.5 * 2 + 3

    multi = inference_pb2.MultiInferenceRequest()
    for sig, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = multi.tasks.add()
        task.model_spec.name = MODEL
        task.model_spec.signature_name = sig
        task.method_name = method
    multi.input.example_list.examples.append(example(1.0))
    results = stub.MultiInference(multi, timeout=30).results
    assert results[0].regression_result.regressions[0].value == 2.5
    assert results[1].classification_result.classifications[0].classes[0].score == 2.5
    assert results[1].model_spec.version.value == 123
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(inference_pb2.MultiInferenceRequest(), timeout=30)
    assert info.value.details() == "Expected at least one task"


def test_get_model_metadata(stub, server: ModelServer) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = stub.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 123)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].inputs["x"].name == "x:0"
    assert signatures.signature_def["classify_x_to_y"].method_name == "tensorflow/serving/classify"
    request.metadata_field[:] = ["other"]
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(request, timeout=30)
    assert info.value.details() == "Metadata field %s is not supportedother"
    request.ClearField("metadata_field")
    with pytest.raises(grpc.RpcError, match="must specify at least one metadata_field"):
        stub.GetModelMetadata(request, timeout=30)


def test_model_service_status_and_reload_errors(channel) -> None:
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    (status,) = models.GetModelStatus(request, timeout=30).model_version_status
    assert (status.version, status.state, status.status.error_code) == (
        123,
        get_model_status_pb2.ModelVersionStatus.AVAILABLE,
        0,
    )
    request.model_spec.version.value = 5
    with pytest.raises(grpc.RpcError) as info:
        models.GetModelStatus(request, timeout=30)
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find version 5 of model half_plus_two",
    )
    with pytest.raises(grpc.RpcError) as info:
        models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(
        "ServerModelConfig type not supported by HandleReloadConfigRequest."
    )


def test_channel_arguments_and_message_truncation() -> None:
    assert parse_channel_arguments("a=1, b=x,,c=-2") == [("a", 1), ("b", "x"), ("c", -2)]
    with pytest.raises(ValueError, match="'oops' is not key=value"):
        parse_channel_arguments("oops")
    assert grpc_message("m" * 1030) == "m" * 1024 + "...TRUNCATED"
    assert grpc_message("short") == "short"


def test_busy_port_is_a_clear_error(server: ModelServer) -> None:
    with pytest.raises(RuntimeError, match=f"could not bind gRPC server to 127.0.0.1:{server.grpc_port}"):
        create_grpc_server(server.manager, bind_address="127.0.0.1", port=server.grpc_port)

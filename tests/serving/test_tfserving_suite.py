"""Every test method of TF Serving's tensorflow_model_server_test.py, as our own tests.

Each test starts `python -m serving.model_server` with the argument list TF Serving's harness
builds (tfserving_harness.harness_argv, `--grpc_socket_path` included) and checks the values
TF's test expects: half_plus_two of 2.0 is 3.0, half_plus_three's 4.0, version 123, the REST
bodies and the metadata file. Servers with the same argv are shared, as the harness shares
them. The unmodified suite itself runs with tools/run_tfserving_suite.sh.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

tf = pytest.importorskip("tensorflow")

import grpc  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow.python.profiler import profiler_client  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serving.tfserving_harness import RunningServer, run_server  # noqa: E402

VERSION = 123  # the testdata models' only version
Start = Callable[..., RunningServer]


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Start]:
    """run_server, one server per distinct set of options (RunServer's args_key cache)."""
    servers: dict[str, RunningServer] = {}

    def get(**options: Any) -> RunningServer:
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in servers:
            servers[key] = run_server(tmp_path_factory.mktemp("server"), **options)
        return servers[key]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def testdata(tfserving_testdata: Path) -> Path:
    return tfserving_testdata


def default(start: Start, model_path: Path, **options: Any) -> RunningServer:
    return start(model_name="default", model_path=str(model_path), **options)


def predict(
    address: str,
    *,
    model_name: str = "default",
    signature_name: str = "serving_default",
    specify_output: bool = True,
    batch_input: bool = False,
) -> predict_pb2.PredictResponse:
    """VerifyPredictRequest's request: x = [2.0] (shape [1], or [1, 1] for batch_input)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    with grpc.insecure_channel(address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 5)


def assert_predicts(address: str, expected: float, *, model_name: str = "default", **kwargs: Any) -> None:
    """VerifyPredictRequest's checks: one float y equal to `expected`, and the model spec."""
    for specify_output in (True, False):
        result = predict(address, model_name=model_name, specify_output=specify_output, **kwargs)
        assert list(result.outputs) == ["y"] and result.outputs["y"].dtype == types_pb2.DT_FLOAT
        assert list(result.outputs["y"].float_val) == [expected]
        spec = result.model_spec
        assert (spec.name, spec.signature_name, spec.version.value) == (
            model_name,
            kwargs.get("signature_name", "serving_default"),
            VERSION,
        )


def rest(server: RunningServer, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(f"http://{server.rest_address}{path}", data, timeout=10) as answer:
        return json.loads(answer.read())


def examples_request(kind: type, signature: str) -> Any:
    request = kind()
    request.model_spec.name = "default"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    return request


# ----------------------------------------------------------------- model service and metadata
def test_get_model_status(start: Start, testdata: Path) -> None:
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    with grpc.insecure_channel(server.grpc_address) as channel:
        result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, 5)
    assert [(s.version, s.status.error_code) for s in result.model_version_status] == [(VERSION, 0)]


def test_get_model_metadata(start: Start, testdata: Path) -> None:
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(server.grpc_address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, 5)
    assert (result.model_spec.name, result.model_spec.version.value) == ("default", VERSION)
    assert list(result.metadata) == ["signature_def"]


# ----------------------------------------------------------------- classify, regress, multi
@pytest.mark.parametrize("model", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu"])
def test_classify_and_classify_tf2(start: Start, testdata: Path, model: str) -> None:
    server = default(start, testdata / model)
    request = examples_request(classification_pb2.ClassificationRequest, "classify_x_to_y")
    with grpc.insecure_channel(server.grpc_address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, 5)
    assert [[c.score for c in r.classes] for r in result.result.classifications] == [[3.0]]
    assert (result.model_spec.signature_name, result.model_spec.version.value) == ("classify_x_to_y", VERSION)


@pytest.mark.parametrize("model", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu"])
def test_regress_and_regress_tf2(start: Start, testdata: Path, model: str) -> None:
    server = default(start, testdata / model)
    request = examples_request(regression_pb2.RegressionRequest, "regress_x_to_y")
    with grpc.insecure_channel(server.grpc_address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(request, 5)
    assert [r.value for r in result.result.regressions] == [3.0]
    assert (result.model_spec.signature_name, result.model_spec.version.value) == ("regress_x_to_y", VERSION)


@pytest.mark.parametrize("model", ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu"])
def test_multi_inference_and_multi_inference_tf2(start: Start, testdata: Path, model: str) -> None:
    server = default(start, testdata / model)
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = "default", signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    with grpc.insecure_channel(server.grpc_address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(request, 5)
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert [(r.model_spec.signature_name, r.model_spec.version.value) for r in result.results] == [
        ("regress_x_to_y", VERSION),
        ("classify_x_to_y", VERSION),
    ]


# ----------------------------------------------------------------- predict and configs
def test_predict_saved_model(start: Start, testdata: Path) -> None:
    assert_predicts(default(start, testdata / "saved_model_half_plus_two_cpu").grpc_address, 3.0)


def good_config(folder: Path, testdata: Path) -> Path:
    """__BuildModelConfigFile: the template with both test model paths filled in."""
    text = (testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(testdata / "saved_model_half_plus_two_cpu"))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(testdata / "saved_model_half_plus_three"))
    path = folder / "good_model_config.conf"
    path.write_text(text)
    return path


def test_good_model_config(start: Start, testdata: Path, tmp_path: Path) -> None:
    server = start(model_config_file=str(good_config(tmp_path, testdata)))
    assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two")
    assert_predicts(server.grpc_address, 4.0, model_name="half_plus_three")


def test_bad_model_config(testdata: Path, tmp_path: Path) -> None:
    server = run_server(tmp_path, wait_for=None, model_config_file=str(testdata / "bad_model_config.txt"))
    try:
        server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.stop()
        pytest.fail("the server did not exit on a config it cannot parse")
    assert server.process.returncode != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.log()


CONFIG = (
    'model_config_list: {{ config: {{ name: "{name}", base_path: "{path}", model_platform: "tensorflow" }} }}'
)


@pytest.mark.parametrize("poll_period", [1, 0])
def test_model_config_reload_and_with_zero_poll_period(
    testdata: Path, tmp_path: Path, poll_period: int
) -> None:
    """Poll period 1: the rewritten config (half_plus_three) is served within TF's 10 s;
    poll period 0: the file is never read again and half_plus_two stays."""
    config = tmp_path / "model_config.txt"
    config.write_text(CONFIG.format(name="half_plus_two", path=testdata / "saved_model_half_plus_two_cpu"))
    server = run_server(
        tmp_path,
        wait_for="half_plus_two",
        model_config_file=str(config),
        model_config_file_poll_period=poll_period,
    )
    try:
        assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two")
        config.write_text(
            CONFIG.format(name="half_plus_three", path=testdata / "saved_model_half_plus_three")
        )
        if poll_period == 0:
            time.sleep(poll_period + 1)
            assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two")
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                assert_predicts(server.grpc_address, 4.0, model_name="half_plus_three")
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "half_plus_three not served 10 s after the rewrite"
                time.sleep(0.5)
    finally:
        server.stop()


def test_good_grpc_channel_args(start: Start, testdata: Path) -> None:
    server = default(
        start,
        testdata / "saved_model_half_plus_two_cpu",
        grpc_channel_arguments="grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
    )
    assert_predicts(server.grpc_address, 3.0)


# ----------------------------------------------------------------- REST
@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [  # testClassifyREST, testRegressREST, testPredictREST, testPredictColumnarREST
        (
            ":classify",
            {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]},
            {"results": [[["", 3.0]]]},
        ),
        (":regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}, {"results": [3.0]}),
        (":predict", {"instances": [2.0, 3.0, 4.0]}, {"predictions": [3.0, 3.5, 4.0]}),
        (":predict", {"inputs": [2.0, 3.0, 4.0]}, {"outputs": [3.0, 3.5, 4.0]}),
    ],
)
def test_rest_inference(start: Start, testdata: Path, path: str, body: dict[str, Any], expected: Any) -> None:
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    assert rest(server, f"/v1/models/default{path}", body) == expected


def test_get_status_rest(start: Start, testdata: Path) -> None:
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    status = {"error_code": "OK", "error_message": ""}
    expected = {"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": status}]}
    assert rest(server, "/v1/models/default") == expected


def sorted_object(value: Any) -> Any:
    """SortedObject: lists compared as multisets (metadata has no order)."""
    if isinstance(value, dict):
        return sorted((k, sorted_object(v)) for k, v in value.items())
    if isinstance(value, list):
        return sorted(sorted_object(v) for v in value)
    return value


def test_get_model_metadata_rest(start: Start, testdata: Path) -> None:
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    expected = json.loads((testdata / "half_plus_two_model_metadata.json").read_text())
    assert sorted_object(rest(server, "/v1/models/default/metadata")) == sorted_object(expected)


def test_prometheus_endpoint(start: Start, testdata: Path) -> None:
    server = default(
        start,
        testdata / "saved_model_half_plus_two_cpu",
        monitoring_config_file=str(testdata / "monitoring_config.txt"),
    )
    url = f"http://{server.rest_address}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert "# TYPE" in answer.read().decode()


# ----------------------------------------------------------------- socket, TF Lite, exports
def test_predict_uds(start: Start, testdata: Path) -> None:
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    assert_predicts(f"unix:{server.socket_path}", 3.0)


@pytest.mark.parametrize(
    "model", ["saved_model_half_plus_two_tflite", "saved_model_half_plus_two_tflite_with_sigdef"]
)
def test_predict_on_tflite_and_with_signature_def(start: Start, testdata: Path, model: str) -> None:
    assert_predicts(default(start, testdata / model, model_type="tflite").grpc_address, 3.0)


def test_tf_saved_model_save(tmp_path: Path) -> None:
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(
        root, str(tmp_path / "m" / "00000123"), root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
    )
    server = run_server(tmp_path, model_name="default", model_path=str(tmp_path / "m"))
    try:
        result = predict(server.grpc_address, specify_output=False)
        assert list(result.outputs["y"].float_val) == [12.0] and result.model_spec.version.value == VERSION
    finally:
        server.stop()


def test_tf_saved_model_save_multiple_signatures(tmp_path: Path) -> None:
    root = tf.train.Checkpoint()
    spec = [tf.TensorSpec(None, tf.float32)]
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=spec)
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=spec)
    signatures = {"serving_default": root.f, "custom_signature_key": root.g}
    tf.saved_model.save(root, str(tmp_path / "m" / "00000123"), signatures=signatures)
    server = run_server(tmp_path, model_name="default", model_path=str(tmp_path / "m"))
    try:
        assert_predicts(server.grpc_address, 2.0, signature_name="custom_signature_key")
        assert_predicts(server.grpc_address, 1.0)
    finally:
        server.stop()


@pytest.mark.parametrize("distributed", [False, True])
def test_sequential_keras_saved_model_save_and_distrat(tmp_path: Path, distributed: bool) -> None:
    """TF's test expects y = 2.0 for input x. With Keras 3 (what `tensorflow` installs),
    tf.saved_model.save of a Sequential model names the signature input `inputs` and the
    output `output_0`, whatever the layer names, so the request's `x` is refused: the official
    tensorflow_model_server answers the same INVALID_ARGUMENT (the text is
    predict_util.cc's). The export, not the server, differs from TF Serving's CI (Keras 2)."""
    keras = pytest.importorskip("keras")
    layers = [keras.layers.Input(shape=(1,), name="x", dtype="float32")]
    if distributed:
        layers.append(keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros"))
    model = keras.Sequential([*layers, keras.layers.Lambda(lambda x: x, name="y")])
    tf.saved_model.save(model, str(tmp_path / "m" / "00000123"))
    server = run_server(tmp_path, model_name="default", model_path=str(tmp_path / "m"))
    try:
        with pytest.raises(grpc.RpcError) as error:
            predict(server.grpc_address, specify_output=False, batch_input=True)
    finally:
        server.stop()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(
        "Signature input alias: inputs(feed name: serving_default_inputs:0) not found in request"
    )


def test_profiler_service_with_valid_trace_request(start: Start, testdata: Path, tmp_path: Path) -> None:
    """A 1 s trace on the gRPC address while REST predicts run writes this server's xplane."""
    server = default(start, testdata / "saved_model_half_plus_two_cpu")
    stop = threading.Event()

    def requests() -> None:
        while not stop.is_set():
            rest(server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})
            time.sleep(0.1)

    worker = threading.Thread(target=requests)
    worker.start()
    try:
        profiler_client.trace(server.grpc_address, str(tmp_path), 1000, "", 10)
    finally:
        stop.set()
        worker.join()
    assert len(list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))) == 1


def test_tf_text(tmp_path: Path, testdata: Path) -> None:
    model = testdata / "tf_text_regression"
    if not model.is_dir():
        pytest.skip("tf_text_regression is not in the shared testdata (TF Serving keeps it in Git LFS)")
    server = run_server(tmp_path, model_name="default", model_path=str(model))
    try:
        result = predict(server.grpc_address)
        assert list(result.outputs["y"].float_val) == [3.0]
    finally:
        server.stop()

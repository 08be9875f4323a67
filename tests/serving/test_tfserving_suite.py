"""Every test method of TF Serving's tensorflow_model_server_test.py, as our own tests."""

# One test per TF method, named after it (testPredictUDS -> test_predict_uds), in TF's order.
# Each starts `python -m serving.model_server` with the argv TF's harness builds
# (tfserving_harness.harness_argv) and checks what TF's test expects, written here as literals:
# half_plus_two(2.0) = 3.0, half_plus_three(2.0) = 4.0, version 123, the REST bodies, the
# metadata JSON. Servers with equal argv are shared, as RunServer shares them. The unmodified
# suite itself runs with tools/run_tfserving_suite.sh.

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

tf = pytest.importorskip("tensorflow")

import grpc  # noqa: E402
from tensorflow.python.profiler import profiler_client  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serving.tfserving_harness import (  # noqa: E402
    HALF_PLUS_TWO_METADATA,
    REPO,
    RPC_TIMEOUT_S,
    VERSION,
    RunningServer,
    assert_predicts,
    free_ports,
    harness_argv,
    predict,
    rest,
    run_server,
)

Start = Callable[..., RunningServer]
TF1 = "saved_model_half_plus_two_cpu"
TF2 = "saved_model_half_plus_two_tf2_cpu"


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Start]:
    """run_server, once per distinct set of options (RunServer's args_key cache)."""
    servers: dict[str, RunningServer] = {}

    def get(**options: Any) -> RunningServer:
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in servers:
            servers[key] = run_server(tmp_path_factory.mktemp("server"), **options)
        return servers[key]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Start]:
    """run_server for one test (a model exported by the test, a config it rewrites), then stop."""
    servers: list[RunningServer] = []

    def go(**options: Any) -> RunningServer:
        servers.append(run_server(tmp_path, **options))
        return servers[-1]

    yield go
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def testdata(tfserving_testdata: Path) -> Path:
    return tfserving_testdata


def default(start: Start, testdata: Path, model: str = TF1, **options: Any) -> RunningServer:
    """RunServer('default', <testdata>/<model>, ...)."""
    return start(model_name="default", model_path=testdata / model, **options)


@contextmanager
def prediction_stub(address: str) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def examples_request(kind: type, signature: str) -> Any:
    request = kind()
    request.model_spec.name = "default"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    return request


def test_get_model_status(start: Start, testdata: Path) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    with grpc.insecure_channel(default(start, testdata).grpc_address) as channel:
        result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT_S)
    statuses = [(s.version, s.state, s.status.error_code) for s in result.model_version_status]
    assert statuses == [(VERSION, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]


def test_get_model_metadata(start: Start, testdata: Path) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    with prediction_stub(default(start, testdata).grpc_address) as stub:
        result = stub.GetModelMetadata(request, RPC_TIMEOUT_S)
    assert (result.model_spec.name, result.model_spec.version.value) == ("default", VERSION)
    assert list(result.metadata) == ["signature_def"]
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(signatures)
    expected = HALF_PLUS_TWO_METADATA["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures.signature_def) == sorted(expected)


def check_classify(server: RunningServer) -> None:
    """_TestClassify: one classification with one class scored 3.0, and the model spec."""
    request = examples_request(classification_pb2.ClassificationRequest, "classify_x_to_y")
    with prediction_stub(server.grpc_address) as stub:
        result = stub.Classify(request, RPC_TIMEOUT_S)
    classes = [[(c.label, c.score) for c in r.classes] for r in result.result.classifications]
    assert classes == [[("", 3.0)]]
    spec = result.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == ("default", "classify_x_to_y", VERSION)


def test_classify(start: Start, testdata: Path) -> None:
    check_classify(default(start, testdata, TF1))


def test_classify_tf2(start: Start, testdata: Path) -> None:
    check_classify(default(start, testdata, TF2))


def check_regress(server: RunningServer) -> None:
    """_TestRegress: one regression of value 3.0, and the model spec."""
    request = examples_request(regression_pb2.RegressionRequest, "regress_x_to_y")
    with prediction_stub(server.grpc_address) as stub:
        result = stub.Regress(request, RPC_TIMEOUT_S)
    assert [r.value for r in result.result.regressions] == [3.0]
    spec = result.model_spec
    assert (spec.name, spec.signature_name, spec.version.value) == ("default", "regress_x_to_y", VERSION)


def test_regress(start: Start, testdata: Path) -> None:
    check_regress(default(start, testdata, TF1))


def test_regress_tf2(start: Start, testdata: Path) -> None:
    check_regress(default(start, testdata, TF2))


def check_multi_inference(server: RunningServer) -> None:
    """_TestMultiInference: a regress then a classify task on one example, both 3.0."""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = "default", signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    with prediction_stub(server.grpc_address) as stub:
        result = stub.MultiInference(request, RPC_TIMEOUT_S)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    specs = [
        (r.model_spec.name, r.model_spec.signature_name, r.model_spec.version.value) for r in result.results
    ]
    assert specs == [("default", "regress_x_to_y", VERSION), ("default", "classify_x_to_y", VERSION)]


def test_multi_inference(start: Start, testdata: Path) -> None:
    check_multi_inference(default(start, testdata, TF1))


def test_multi_inference_tf2(start: Start, testdata: Path) -> None:
    check_multi_inference(default(start, testdata, TF2))


def test_predict_saved_model(start: Start, testdata: Path) -> None:
    assert_predicts(default(start, testdata).grpc_address, 3.0)


def test_good_model_config(start: Start, testdata: Path, tmp_path: Path) -> None:
    """The template with both model paths filled in (TF's __BuildModelConfigFile) serves both."""
    text = (testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(testdata / TF1))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(testdata / "saved_model_half_plus_three"))
    (tmp_path / "good_model_config.conf").write_text(text)
    server = start(model_config_file=tmp_path / "good_model_config.conf")
    assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two")
    assert_predicts(server.grpc_address, 4.0, model_name="half_plus_three")


def test_bad_model_config(testdata: Path, tmp_path: Path) -> None:
    """The server exits on an unparsable config and says why on stderr (TF reads proc.stderr)."""
    config = testdata / "bad_model_config.txt"
    argv = harness_argv(*free_ports(2), tmp_path / "tf-serving.sock", model_config_file=config)
    done = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode != 0
    assert b"Error parsing text-format tensorflow.serving.ModelServerConfig" in done.stderr


CONFIG = (
    'model_config_list: {{ config: {{ name: "{name}", base_path: "{path}", model_platform: "tensorflow" }} }}'
)


def write_config(path: Path, name: str, model: Path) -> None:
    path.write_text(CONFIG.format(name=name, path=model))


def test_model_config_reload(run: Start, testdata: Path, tmp_path: Path) -> None:
    """With a 1 s poll, the rewritten config (half_plus_three) is served within TF's 10 s."""
    config = tmp_path / "model_config.txt"
    write_config(config, "half_plus_two", testdata / TF1)
    server = run(model_config_file=config, model_config_file_poll_period=1)
    assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two", output_filters=(False,))
    write_config(config, "half_plus_three", testdata / "saved_model_half_plus_three")
    deadline = time.monotonic() + 10  # TF sleeps 10 s, then asks once
    while True:
        try:
            assert_predicts(server.grpc_address, 4.0, model_name="half_plus_three", output_filters=(False,))
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline, "half_plus_three not served 10 s after the rewrite"
            time.sleep(0.5)


def test_model_config_reload_with_zero_poll_period(run: Start, testdata: Path, tmp_path: Path) -> None:
    """With poll period 0 the file is read once: after a rewrite half_plus_two is still served."""
    config = tmp_path / "model_config.txt"
    write_config(config, "half_plus_two", testdata / TF1)
    server = run(model_config_file=config, model_config_file_poll_period=0)
    assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two", output_filters=(False,))
    write_config(config, "half_plus_three", testdata / "saved_model_half_plus_three")
    time.sleep(0 + 1)  # TF: poll_period + 1
    assert_predicts(server.grpc_address, 3.0, model_name="half_plus_two", output_filters=(False,))
    with pytest.raises(grpc.RpcError) as error:  # and the rewrite was not read
        predict(server.grpc_address, model_name="half_plus_three")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "Servable not found for request: Latest(half_plus_three)"


def test_good_grpc_channel_args(start: Start, testdata: Path) -> None:
    channel_args = "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb"
    server = default(start, testdata, grpc_channel_arguments=channel_args)
    assert_predicts(server.grpc_address, 3.0)


def test_classify_rest(start: Start, testdata: Path) -> None:
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert rest(default(start, testdata), "/v1/models/default:classify", body) == {"results": [[["", 3.0]]]}


def test_regress_rest(start: Start, testdata: Path) -> None:
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert rest(default(start, testdata), "/v1/models/default:regress", body) == {"results": [3.0]}


def test_predict_rest(start: Start, testdata: Path) -> None:
    body = {"instances": [2.0, 3.0, 4.0]}
    assert rest(default(start, testdata), "/v1/models/default:predict", body) == {
        "predictions": [3.0, 3.5, 4.0]
    }


def test_predict_columnar_rest(start: Start, testdata: Path) -> None:
    body = {"inputs": [2.0, 3.0, 4.0]}
    assert rest(default(start, testdata), "/v1/models/default:predict", body) == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(start: Start, testdata: Path) -> None:
    status = {"error_code": "OK", "error_message": ""}
    expected = {"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": status}]}
    assert rest(default(start, testdata), "/v1/models/default") == expected


def test_get_model_metadata_rest(start: Start, testdata: Path) -> None:
    """Compared whole: TF sorts lists first, but the only lists here are ordered shapes."""
    assert rest(default(start, testdata), "/v1/models/default/metadata") == HALF_PLUS_TWO_METADATA


def test_prometheus_endpoint(start: Start, testdata: Path) -> None:
    server = default(start, testdata, monitoring_config_file=testdata / "monitoring_config.txt")
    url = f"http://{server.rest_address}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=RPC_TIMEOUT_S) as answer:
        assert "# TYPE" in answer.read().decode()


def test_predict_uds(start: Start, testdata: Path) -> None:
    """The server TF's other tests use also answers on --grpc_socket_path."""
    server = default(start, testdata)
    assert_predicts(f"unix:{server.socket_path}", 3.0, output_filters=(False,))


def test_predict_on_tf_lite(start: Start, testdata: Path) -> None:
    server = default(start, testdata, "saved_model_half_plus_two_tflite", model_type="tflite")
    assert_predicts(server.grpc_address, 3.0, output_filters=(False,))


def test_predict_with_signature_def_on_tf_lite(start: Start, testdata: Path) -> None:
    server = default(start, testdata, "saved_model_half_plus_two_tflite_with_sigdef", model_type="tflite")
    assert_predicts(server.grpc_address, 3.0, output_filters=(False,))


def test_tf_saved_model_save(run: Start, tmp_path: Path) -> None:
    """y = v1 * v2 * x with v1 = 3, v2 = 2, from tf.saved_model.save: 12.0."""
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    signature = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
    tf.saved_model.save(root, str(tmp_path / "model" / "00000123"), signature)
    server = run(model_name="default", model_path=tmp_path / "model")
    assert_predicts(server.grpc_address, 12.0, output_filters=(False,))


def test_tf_saved_model_save_multiple_signatures(run: Start, tmp_path: Path) -> None:
    root = tf.train.Checkpoint()
    spec = [tf.TensorSpec(None, tf.float32)]
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=spec)
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=spec)
    signatures = {"serving_default": root.f, "custom_signature_key": root.g}
    tf.saved_model.save(root, str(tmp_path / "model" / "00000123"), signatures=signatures)
    server = run(model_name="default", model_path=tmp_path / "model")
    assert_predicts(server.grpc_address, 2.0, signature_name="custom_signature_key", output_filters=(True,))
    assert_predicts(server.grpc_address, 1.0, output_filters=(True,))


def check_keras3_sequential(server: RunningServer) -> None:
    """TF's request (x of shape [1, 1], no filter) is refused, as any TF Serving refuses it.

    TF's test expects y = 2.0: under Keras 2 the signature took the layer names x and y. The
    installed Keras 3 exports a Sequential model's signature as `inputs` -> `output_0` whatever
    the layer names, so TF's unmodified test fails against the official server too. TF Serving's
    PreProcessPrediction passes the sizes check (one input each) and TensorFlow's
    saved_model::GetInputValues refuses the alias with the text below. The same request under
    Keras 3's names gives TF's 2.0, so the export itself is served.
    """
    with pytest.raises(grpc.RpcError) as error:
        predict(server.grpc_address, specify_output=False, batch_input=True)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == (
        "Signature input alias: inputs(feed name: serving_default_inputs:0) not found in request"
        " and no default value provided. Inputs expected to be in the request {x}, or default"
        " input alias set: "
    )
    result = predict(server.grpc_address, specify_output=False, batch_input=True, alias="inputs")
    assert list(result.outputs) == ["output_0"]
    assert list(result.outputs["output_0"].float_val) == [2.0]
    assert result.model_spec.version.value == VERSION


def test_sequential_keras_saved_model_save(run: Start, tmp_path: Path) -> None:
    model = tf.keras.models.Sequential()
    model.add(tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"))
    model.add(tf.keras.layers.Lambda(lambda x: x, name="y"))
    tf.saved_model.save(model, str(tmp_path / "model" / "00000123"))
    check_keras3_sequential(run(model_name="default", model_path=tmp_path / "model"))


def test_distrat_sequential_keras_saved_model_save(run: Start, tmp_path: Path) -> None:
    """Exported in a fresh interpreter: see tfserving_harness.export_distrat_sequential."""
    export = [sys.executable, "-m", "tests.serving.tfserving_harness", str(tmp_path / "model" / "00000123")]
    done = subprocess.run(export, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    check_keras3_sequential(run(model_name="default", model_path=tmp_path / "model"))


def test_profiler_service_with_valid_trace_request(start: Start, testdata: Path, tmp_path: Path) -> None:
    """A 1 s trace on the gRPC address while REST predicts run writes one xplane.pb.

    TF's test sends a predict every second for 3 seconds beside the trace; here they go on until
    the trace returns, so a slow machine whose first trace window opens late (CI) still traces
    requests: an idle window has no events and the client retries it.
    """
    server = default(start, testdata)
    answers: list[Any] = []
    tracing = threading.Event()
    tracing.set()

    def requests() -> None:  # TF: a wget every second for 3 seconds
        while tracing.is_set() or len(answers) < 3:
            answers.append(rest(server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}))
            time.sleep(0.25)

    worker = threading.Thread(target=requests)
    worker.start()
    try:
        profiler_client.trace(server.grpc_address, str(tmp_path / "logs"), 1000, "", 10)
    finally:
        tracing.clear()
        worker.join()
    assert len(answers) >= 3
    assert all(answer == {"predictions": [3.0, 3.5, 4.0]} for answer in answers)
    assert len(list((tmp_path / "logs").glob("plugins/profile/*/*.xplane.pb"))) == 1


def test_tf_text(run: Start, testdata: Path) -> None:
    model = testdata / "tf_text_regression"
    if not model.is_dir():
        pytest.skip("model tf_text_regression is absent from the shared testdata (Git LFS in TF Serving)")
    server = run(model_name="default", model_path=model)
    result = predict(server.grpc_address)  # TF allows 600 s; ours is 5 s, after the load
    assert list(result.outputs["y"].float_val) == [3.0]

"""Conformance with TF Serving's own test models and expected values, over gRPC and REST."""

# Expected numbers come from tensorflow_serving's tests and testdata (half_plus_two: y = 0.5x + 2,
# half_plus_three: y = 0.5x + 3, y2 = 0.5x + 3) and the metadata JSON files shipped with them.

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
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
from tensorflow_serving.config import model_server_config_pb2

from serving.model_server.config import ServerOptions
from serving.model_server.errors import ServingError
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray, to_ndarray


@contextmanager
def serve(**flags: Any) -> Iterator[Client]:
    options = ServerOptions(port=0, rest_api_port=0, bind_address="127.0.0.1", **flags)
    with ModelServer(options, enable_rest=True) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            yield Client(server, channel)


class Client:
    """Both faces of one running server."""

    def __init__(self, server: ModelServer, channel: grpc.Channel) -> None:
        self.server = server
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(channel)

    def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.rest_port, timeout=60)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body).encode())
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def predict(
        self, name: str, x: np.ndarray, *, alias: str = "x", **spec: Any
    ) -> predict_pb2.PredictResponse:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        for key, value in spec.items():
            if key == "version":
                request.model_spec.version.value = value
            else:
                setattr(request.model_spec, key, value)
        if x is not None:
            request.inputs[alias].CopyFrom(from_ndarray(x))
        return self.predict_stub.Predict(request, timeout=60)

    def status(self, name: str) -> list[tuple[int, str, int, str]]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        response = self.model_stub.GetModelStatus(request, timeout=60)
        return [
            (
                s.version,
                get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                s.status.error_code,
                s.status.error_message,
            )
            for s in response.model_version_status
        ]


def example(**features: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in features.items()
            }
        )
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------- half_plus_two
@pytest.fixture(scope="module")
def half_plus_two(tfserving_testdata: Path) -> Iterator[Client]:
    # TF Serving's tests serve it under the default model name "default".
    with serve(
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
    ) as c:
        yield c


def test_half_plus_two_rest(half_plus_two: Client) -> None:
    assert half_plus_two.rest("POST", "/v1/models/default:predict", {"instances": [1.0, 2.0, 5.0]}) == (
        200,
        {"predictions": [2.5, 3.0, 4.5]},
    )
    assert half_plus_two.rest(
        "POST", "/v1/models/default:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    ) == (200, {"results": [[["", 3.0]]]})
    assert half_plus_two.rest(
        "POST", "/v1/models/default:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    ) == (200, {"results": [3.0]})
    assert half_plus_two.rest(
        "POST",
        "/v1/models/default/versions/123:regress",
        {"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]},
    ) == (200, {"results": [4.0]})


def test_half_plus_two_metadata_matches_tf_serving_file(
    half_plus_two: Client, tfserving_testdata: Path
) -> None:
    expected = json.loads((tfserving_testdata / "half_plus_two_model_metadata.json").read_text())
    assert half_plus_two.rest("GET", "/v1/models/default/metadata") == (200, expected)
    assert half_plus_two.rest("GET", "/v1/models/default/versions/123/metadata") == (200, expected)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "default"
    response = half_plus_two.predict_stub.GetModelMetadata(request, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    as_json = json_format.MessageToDict(
        signatures, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert as_json == expected["metadata"]["signature_def"]
    assert (response.model_spec.name, response.model_spec.version.value) == ("default", 123)


def test_half_plus_two_grpc(half_plus_two: Client) -> None:
    response = half_plus_two.predict("default", np.array([[2.0]], np.float32))
    assert to_ndarray(response.outputs["y"]).tolist() == [[3.0]]
    assert (response.model_spec.name, response.model_spec.version.value) == ("default", 123)

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "default"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(example(x=2.0))
    result = half_plus_two.predict_stub.Classify(classify, timeout=60).result
    assert [(c.label, c.score) for c in result.classifications[0].classes] == [("", 3.0)]

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(example(x=2.0))
    assert half_plus_two.predict_stub.Regress(regress, timeout=60).result.regressions[0].value == 3.0

    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = multi.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
    multi.input.example_list.examples.append(example(x=2.0))
    results = half_plus_two.predict_stub.MultiInference(multi, timeout=60).results
    assert results[0].regression_result.regressions[0].value == 3.0
    assert results[1].classification_result.classifications[0].classes[0].score == 3.0


def test_half_plus_two_status(half_plus_two: Client) -> None:
    assert half_plus_two.status("default") == [(123, "AVAILABLE", 0, "")]
    assert half_plus_two.rest("GET", "/v1/models/default") == (
        200,
        {
            "model_version_status": [
                {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )


# --------------------------------------------------------------------------- versions and labels
def test_two_versions_policies_and_labels(tfserving_testdata: Path, tmp_path: Path) -> None:
    base = tfserving_testdata / "saved_model_half_plus_two_2_versions"
    config = tmp_path / "models.config"
    config.write_text(
        f"""model_config_list {{
  config {{ name: "saved_model_half_plus_two_2_versions" base_path: "{base}" model_platform: "tensorflow"
           model_version_policy {{ all {{}} }}
           version_labels {{ key: "stable" value: 123 }} version_labels {{ key: "canary" value: 124 }} }}
  config {{ name: "latest" base_path: "{base}" model_platform: "tensorflow" }}
  config {{ name: "specific" base_path: "{base}" model_platform: "tensorflow"
           model_version_policy {{ specific {{ versions: 123 }} }} }}
}}
"""
    )
    # ServerCore::ReloadConfig checks labels before loading: on a first config, no version is
    # available yet, so TF Serving refuses labels unless allowed for unavailable models.
    with pytest.raises(
        ServingError,
        match="^Request to assign label to version 124 of model saved_model_half_plus_two_2_versions, "
        "which is not currently available for inference$",
    ) as refused:
        with serve(model_config_file=str(config), file_system_poll_wait_seconds=0):
            pass
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with serve(
        model_config_file=str(config),
        file_system_poll_wait_seconds=0,
        allow_version_labels_for_unavailable_models=True,
    ) as c:
        name = "saved_model_half_plus_two_2_versions"
        assert c.status(name) == [(124, "AVAILABLE", 0, ""), (123, "AVAILABLE", 0, "")]
        assert c.status("latest") == [(124, "AVAILABLE", 0, "")]
        assert c.status("specific") == [(123, "AVAILABLE", 0, "")]
        x = np.array([[1.0]], np.float32)
        assert c.predict(name, x).model_spec.version.value == 124
        assert c.predict(name, x, version=123).model_spec.version.value == 123
        assert c.predict(name, x, version_label="stable").model_spec.version.value == 123
        assert c.predict(name, x, version_label="canary").model_spec.version.value == 124
        assert c.predict("specific", x).model_spec.version.value == 123
        with pytest.raises(grpc.RpcError) as info:
            c.predict("latest", x, version=123)
        assert info.value.details() == "Servable not found for request: Specific(latest, 123)"
        assert c.rest("POST", f"/v1/models/{name}/labels/stable:predict", {"instances": [[1.0]]}) == (
            200,
            {"predictions": [[2.5]]},
        )
        expected = json.loads(
            (tfserving_testdata / "saved_model_half_plus_two_2_versions_metadata.json").read_text()
        )
        assert c.rest("GET", f"/v1/models/{name}/labels/stable/metadata") == (200, expected)
        assert c.rest("GET", f"/v1/models/{name}/versions/123/metadata") == (200, expected)


# --------------------------------------------------------------------------- config file and reload
def test_half_plus_three_config_file_live_reload(tfserving_testdata: Path, tmp_path: Path) -> None:
    template = (tfserving_testdata / "good_model_config.txt").read_text()
    both = template.replace(
        "${TEST_HALF_PLUS_TWO_DIR}", str(tfserving_testdata / "saved_model_half_plus_two_cpu")
    ).replace("${TEST_HALF_PLUS_THREE_DIR}", str(tfserving_testdata / "saved_model_half_plus_three"))
    only_two = both[: both.index('  config: {\n    name: "half_plus_three"')].rstrip().rstrip(",") + "\n}\n"
    config = tmp_path / "models.config"
    config.write_text(only_two)
    with serve(
        model_config_file=str(config), model_config_file_poll_wait_seconds=1, file_system_poll_wait_seconds=0
    ) as c:
        assert c.rest("POST", "/v1/models/half_plus_three:predict", {"instances": [1.0]})[0] == 404
        write_atomic(config, both)

        def available() -> bool:
            status, body = c.rest("GET", "/v1/models/half_plus_three")
            return status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"

        wait_for(available, "half_plus_three to load")
        assert c.rest("POST", "/v1/models/half_plus_three:predict", {"instances": [1.0, 2.0, 5.0]}) == (
            200,
            {"predictions": [3.5, 4.0, 5.5]},
        )
        assert c.rest("POST", "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}) == (
            200,
            {"predictions": [2.5, 3.0, 4.5]},
        )
        assert c.rest(
            "POST",
            "/v1/models/half_plus_three:regress",
            {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 2.0}]},
        ) == (
            200,
            {"results": [4.0]},
        )


def test_handle_reload_config_request(tfserving_testdata: Path) -> None:
    # Ours: the API loads only under the starting base paths or --model_config_roots.
    with serve(
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        model_config_roots=str(tfserving_testdata),
    ) as c:
        request = model_management_pb2.ReloadConfigRequest()
        entry = request.config.model_config_list.config.add(
            name="half_plus_three",
            base_path=str(tfserving_testdata / "saved_model_half_plus_three"),
            model_platform="tensorflow",
        )
        assert entry.name == "half_plus_three"
        response = c.model_stub.HandleReloadConfigRequest(request, timeout=120)
        assert response.status.error_code == 0
        assert to_ndarray(
            c.predict("half_plus_three", np.array([2.0], np.float32)).outputs["y"]
        ).tolist() == [4.0]
        with pytest.raises(grpc.RpcError) as info:
            c.predict("half_plus_two", np.array([[2.0]], np.float32))
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(half_plus_two)",
        )
        assert isinstance(model_server_config_pb2.ModelServerConfig(), type(request.config))


# --------------------------------------------------------------------------- bad models
def test_bad_model_refuses_to_start(tfserving_testdata: Path) -> None:
    with pytest.raises(
        ServingError,
        match=r"^1 model\(s\) did not become available: \{\{\{name: default version: 123\} due to error: NOT_FOUND: ",
    ):
        with serve(
            model_base_path=str(tfserving_testdata / "bad_half_plus_two"),
            file_system_poll_wait_seconds=0,
            max_num_load_retries=1,
            load_retry_interval_micros=-1,
        ):
            pass


def test_bad_new_version_keeps_the_old_one_serving(tfserving_testdata: Path, tmp_path: Path) -> None:
    base = tmp_path / "hpt"
    shutil.copytree(tfserving_testdata / "saved_model_half_plus_two_cpu" / "00000123", base / "123")
    with serve(
        model_name="hpt", model_base_path=str(base), file_system_poll_wait_seconds=1, max_num_load_retries=0
    ) as c:
        staging = tmp_path / "staging"
        shutil.copytree(tfserving_testdata / "bad_half_plus_two" / "00000123", staging)
        staging.rename(base / "124")
        wait_for(
            lambda: any(v == 124 and s == "END" for v, s, *_ in c.status("hpt")), "the bad version to fail"
        )
        states = c.status("hpt")
        assert states[0][:2] == (124, "END") and states[0][2] != 0 and states[0][3]
        assert states[1] == (123, "AVAILABLE", 0, "")
        response = c.predict("hpt", np.array([[1.0]], np.float32))
        assert to_ndarray(response.outputs["y"]).tolist() == [[2.5]]
        assert response.model_spec.version.value == 123
        status, body = c.rest("GET", "/v1/models/hpt/versions/124")
        assert status == 200 and body["model_version_status"][0]["state"] == "END"
        assert body["model_version_status"][0]["status"]["error_code"] != "OK"


# --------------------------------------------------------------------------- stateful counter
def test_counter_model_stateful_signatures(tfserving_testdata: Path) -> None:
    with serve(
        model_name="counter",
        model_base_path=str(tfserving_testdata / "saved_model_counter"),
        file_system_poll_wait_seconds=0,
    ) as c:

        def call(signature: str, delta: float | None = None) -> float:
            x = None if delta is None else np.array(delta, np.float32)
            response = c.predict("counter", x, alias="delta", signature_name=signature)
            return float(to_ndarray(response.outputs["output"]))

        assert call("get_counter") == 0.0
        assert call("incr_counter") == 1.0
        assert call("incr_counter") == 2.0
        assert call("incr_counter_by", 3.0) == 5.0
        assert call("get_counter") == 5.0
        assert call("reset_counter") == 0.0
        assert call("get_counter") == 0.0


# --------------------------------------------------------------------------- batching
def test_matrix_half_plus_two_through_the_batcher(tfserving_testdata: Path, tmp_path: Path) -> None:
    params = tmp_path / "batching.config"
    params.write_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 20000 }\n"
        "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 100 }\n"
    )
    with serve(
        model_name="matrix_half_plus_two",
        model_base_path=str(tfserving_testdata / "matrix_half_plus_two"),
        enable_batching=True,
        batching_parameters_file=str(params),
        file_system_poll_wait_seconds=0,
    ) as c:
        rng = np.random.default_rng(0)
        inputs = [rng.normal(size=(1 + i % 3, 3, 3)).astype(np.float32) for i in range(12)]
        results: list[Any] = [None] * len(inputs)

        def worker(i: int) -> None:
            results[i] = to_ndarray(c.predict("matrix_half_plus_two", inputs[i]).outputs["y"])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for x, y in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(y, 0.5 * x + 2)
        # More rows than max_batch_size: TF Serving refuses the task (shared_batch_scheduler.h).
        big = rng.normal(size=(20, 3, 3)).astype(np.float32)
        with pytest.raises(grpc.RpcError) as refused:
            c.predict("matrix_half_plus_two", big)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "Task size 20 is larger than maximum input batch size 16"
        # TF Serving's own example request over REST.
        status, body = c.rest(
            "POST",
            "/v1/models/matrix_half_plus_two:predict",
            {"instances": [[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]},
        )
        assert (status, body) == (200, {"predictions": [[[2.5, 3.0, 3.5], [4.0, 4.5, 5.0], [5.5, 6.0, 6.5]]]})


def test_large_batch_splitting_answers_a_large_task_whole(tfserving_testdata: Path, tmp_path: Path) -> None:
    """enable_large_batch_splitting: a 20-row task runs as pieces of max_execution_batch_size 8."""
    params = tmp_path / "batching.config"
    params.write_text(
        "max_batch_size { value: 32 }\nmax_execution_batch_size { value: 8 }\n"
        "enable_large_batch_splitting { value: true }\nbatch_timeout_micros { value: 1000 }\n"
    )
    with serve(
        model_name="matrix_half_plus_two",
        model_base_path=str(tfserving_testdata / "matrix_half_plus_two"),
        enable_batching=True,
        batching_parameters_file=str(params),
        file_system_poll_wait_seconds=0,
    ) as c:
        big = np.random.default_rng(1).normal(size=(20, 3, 3)).astype(np.float32)
        np.testing.assert_array_equal(
            to_ndarray(c.predict("matrix_half_plus_two", big).outputs["y"]), 0.5 * big + 2
        )


# --------------------------------------------------------------------------- the project's CTR model
@pytest.fixture(scope="module")
def ctr_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A small untrained DeepFM exported by export/ (weights from a fixed seed)."""
    from export.saved_model import export_saved_model
    from training.features import Feature, FeatureContract
    from training.models import ModelConfig, build_model

    contract = FeatureContract(
        features=(
            Feature("user", "categorical_string", "user", vocabulary=("ann", "bob", "cy"), embedding_dim=4),
            Feature("item", "categorical_int", "item", vocabulary=(10, 20, 30), embedding_dim=4),
            Feature("tags", "multi_categorical", "item", vocabulary=("x", "y"), max_len=2, embedding_dim=4),
            Feature("price", "numeric", "item", mean=5.0, std=2.0),
        )
    )
    model = build_model("deepfm", contract, config=ModelConfig(hidden_units=(8,)), seed=3)
    base = tmp_path_factory.mktemp("ctr")
    export_saved_model(model, contract, base, "ctr", version=1)
    return contract, base / "ctr"


def test_ctr_model_from_export(ctr_model: tuple[Any, Path]) -> None:
    contract, base = ctr_model
    rng = np.random.default_rng(5)
    rows = 40
    batch = {
        "user": np.array(rng.choice(["ann", "bob", "cy", "new"], rows), dtype=object),
        "item": rng.choice([10, 20, 30, 99], rows).astype(np.int64),
        "tags": np.array(rng.choice(["x|y", "", "y", "z|x"], rows), dtype=object),
        "price": rng.normal(5.0, 2.0, rows).astype(np.float32),
    }
    # The independent route: TensorFlow's own loader calling the exported signature in process.
    signature = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    expected = signature(
        **{k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in batch.items()}
    )
    expected_ctr = expected["ctr"].numpy()
    with serve(model_name="ctr", model_base_path=str(base), file_system_poll_wait_seconds=0) as c:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "ctr"
        for name, values in batch.items():
            request.inputs[name].CopyFrom(from_ndarray(values))
        response = c.predict_stub.Predict(request, timeout=60)
        np.testing.assert_allclose(to_ndarray(response.outputs["ctr"]), expected_ctr, rtol=1e-6)
        assert set(response.outputs) == {"ctr", "logit"}

        columnar = {k: v.tolist() if v.dtype != object else [str(s) for s in v] for k, v in batch.items()}
        status, body = c.rest("POST", "/v1/models/ctr:predict", {"inputs": columnar})
        assert status == 200
        np.testing.assert_allclose(np.array(body["outputs"]["ctr"], np.float32), expected_ctr, rtol=1e-6)
        instances = [{k: columnar[k][i] for k in columnar} for i in range(rows)]
        status, body = c.rest("POST", "/v1/models/ctr:predict", {"instances": instances})
        assert status == 200
        np.testing.assert_allclose(
            np.array([p["ctr"] for p in body["predictions"]], np.float32), expected_ctr, rtol=1e-6
        )

        # The served signature is the feature contract: names and wire dtypes.
        status, meta = c.rest("GET", "/v1/models/ctr/metadata")
        inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
        wire = {"string": "DT_STRING", "int64": "DT_INT64", "float32": "DT_FLOAT"}
        assert {k: v["dtype"] for k, v in inputs.items()} == {
            f.name: wire[f.dtype] for f in contract.features
        }

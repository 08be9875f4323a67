"""RestClient against a real stdlib HTTP server speaking TF Serving's columnar JSON."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from recommender_client.client import (
    BadResponse,
    InvalidRequest,
    ModelNotFound,
    RestClient,
    ServingTimeout,
    ServingUnavailable,
    TFServingError,
)
from recommender_client.client.json_tensors import array_to_json, json_to_array
from recommender_client.client.rest_client import model_path

from .servers import VERSION, Behaviour, free_port, start_rest_server

X = np.array([1.0, 2.0, 5.0], dtype=np.float32)


@pytest.fixture(scope="module")
def server():
    behaviour = Behaviour()
    http_server, port = start_rest_server(behaviour)
    yield behaviour, port
    behaviour.release.set()
    http_server.shutdown()
    http_server.server_close()


@pytest.fixture()
def base_url(server):
    return f"http://127.0.0.1:{server[1]}"


@pytest.fixture()
def client(base_url):
    with RestClient(base_url, timeout=5.0, retries=2, backoff=0.01) as client:
        yield client


def test_predict_unnamed_single_output_gets_its_name_from_metadata(client, behaviour):
    first = client.predict({"x": X}, model_name="half_plus_two")
    second = client.predict({"x": X[:1]}, model_name="half_plus_two", version=VERSION)
    assert list(first) == ["y"] and first["y"].dtype == np.float32
    assert first["y"].tolist() == [2.5, 3.0, 4.5]
    assert second["y"].tolist() == [2.5]
    by_label = client.predict(
        {"x": X}, model_name="half_plus_two", version_label="stable", output_filter=["y"]
    )
    assert by_label["y"].tolist() == [2.5, 3.0, 4.5]
    assert behaviour.calls["half_plus_two"] == 3


def test_named_outputs_strings_and_b64(client):
    out = client.predict({"x": X[:2]}, model_name="named")
    assert out["y"].tolist() == [2.5, 3.0]
    assert out["tags"].tolist() == [b"t1", b"t2"]  # same type the gRPC client returns
    assert out["raw"].tolist() == [b"\xff", b"\xff"]
    assert list(client.predict({"x": X}, model_name="named", output_filter=["tags"])) == ["tags"]
    with pytest.raises(BadResponse, match=r"lacks requested outputs \['ctr'\]"):
        client.predict({"x": X}, model_name="named", output_filter=["ctr"])


def test_503_twice_then_success_is_retried(client, behaviour):
    assert client.predict({"x": X}, model_name="flaky", output_filter=["y"])["y"].tolist() == [2.5, 3.0, 4.5]
    assert behaviour.calls["flaky"] == 3


def test_503_beyond_retries_is_unavailable(base_url, behaviour):
    behaviour.fail_times = 10
    with RestClient(base_url, timeout=5.0, retries=2, backoff=0.01) as client:
        with pytest.raises(
            ServingUnavailable, match=r"HTTP 503: model flaky is warming up \(call 3\)"
        ) as info:
            client.predict({"x": X}, model_name="flaky")
    assert info.value.code == 503 and behaviour.calls["flaky"] == 3


def test_slow_server_times_out(client, behaviour):
    with pytest.raises(ServingTimeout, match="no answer within"):
        client.predict({"x": X}, model_name="slow", timeout=0.2)
    assert behaviour.calls["slow"] == 1


def test_errors_are_typed_with_server_message(client, behaviour):
    with pytest.raises(InvalidRequest, match=r"HTTP 400: input 'x' is missing") as info:
        client.predict({"z": X}, model_name="half_plus_two")
    assert info.value.code == 400 and info.value.server_message.startswith("input 'x' is missing")
    with pytest.raises(ModelNotFound, match=r"HTTP 404: Servable not found.*Specific\(half_plus_two, 9\)"):
        client.predict({"x": X}, model_name="half_plus_two", version=9)
    with pytest.raises(TFServingError, match="HTTP 500: kernel exploded") as broken:
        client.predict({"x": X}, model_name="broken")
    assert type(broken.value) is TFServingError
    with pytest.raises(BadResponse, match="response is not JSON"):
        client.predict({"x": X}, model_name="garbage")
    assert behaviour.calls["half_plus_two"] == 2  # nothing retried


def test_model_status_and_metadata(client):
    assert [(s.version, s.state, s.error_code) for s in client.model_status("half_plus_two")] == [
        (VERSION, "AVAILABLE", "OK")
    ]
    with pytest.raises(ModelNotFound, match="Could not find any versions of model nope"):
        client.model_status("nope")
    meta = client.model_metadata("half_plus_two")
    assert (meta.model_name, meta.version) == ("half_plus_two", VERSION)
    assert {n: (s.dtype, s.shape) for n, s in meta.signature().outputs.items()} == {"y": ("float32", (None,))}


def test_metadata_parser_reads_tf_servings_own_json(tfserving_testdata):
    """The JSON TF Serving itself produced for half_plus_two, fed through a mock transport."""
    text = (tfserving_testdata / "half_plus_two_model_metadata.json").read_text()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=text.encode()))
    with RestClient("http://tfs.invalid", transport=transport) as client:
        meta = client.model_metadata("default")
    assert (meta.model_name, meta.version) == ("default", 123)
    assert sorted(meta.signatures) == [
        "classify_x_to_y",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "serving_default",
    ]
    assert meta.signature().inputs["x"].shape == (None, 1)
    assert meta.signature("classify_x_to_y").inputs["inputs"].dtype == "string"
    assert meta.signature("classify_x_to_y").inputs["inputs"].shape is None


def test_request_body_is_columnar(server):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.raw_path.decode(), json.loads(request.content)))
        return httpx.Response(200, json={"outputs": {"ctr": [0.25, 0.5]}})

    with RestClient("http://tfs.invalid", transport=httpx.MockTransport(handler)) as client:
        out = client.predict(
            {
                "f": np.array([0.5, 1.5], np.float32),
                "i": np.array([1, 2]),
                "s": np.array(["a", "ü"], dtype=object),
            },
            model_name="ctr model",
            version_label="canary",
        )
    assert out["ctr"].tolist() == [0.25, 0.5]
    assert seen == [
        (
            "POST",
            "/v1/models/ctr%20model/labels/canary:predict",
            {"inputs": {"f": [0.5, 1.5], "i": [1, 2], "s": ["a", "ü"]}, "signature_name": "serving_default"},
        )
    ]


def test_no_server_is_unavailable():
    with RestClient(f"http://127.0.0.1:{free_port()}", timeout=5.0, retries=1, backoff=0.01) as client:
        with pytest.raises(ServingUnavailable, match="ConnectError.*gave up after 2 attempt"):
            client.model_status("half_plus_two")


def test_json_tensor_codec():
    assert array_to_json(np.array([b"ok", b"\xff\xfe"], dtype=object)) == ["ok", {"b64": "//4="}]
    assert array_to_json(np.array([[1, 2], [3, 4]], np.int64)) == [[1, 2], [3, 4]]
    with pytest.raises(InvalidRequest, match="input 's': string tensors take str or bytes, got int"):
        array_to_json(np.array(["a", 1], dtype=object), name="s")
    assert json_to_array([1, 2]).dtype == np.int64
    assert json_to_array([[0.1], [0.2]]).dtype == np.float32
    assert json_to_array([0.1], float_dtype=np.float64).tolist() == [0.1]
    with pytest.raises(BadResponse, match="output 'y': not a rectangular tensor"):
        json_to_array([[1], [2, 3]], name="y")
    with pytest.raises(BadResponse, match="output 'y': cannot decode JSON value"):
        json_to_array([{"x": 1}], name="y")


def test_model_path_checks_the_reference_like_the_grpc_model_spec():
    assert model_path("a b/c") == "/v1/models/a%20b%2Fc"
    assert model_path("m", version=np.int64(3)) == "/v1/models/m/versions/3"
    assert model_path("m", version_label="canary/x") == "/v1/models/m/labels/canary%2Fx"
    with pytest.raises(InvalidRequest, match="model_name must be a non-empty string"):
        model_path("")
    with pytest.raises(InvalidRequest, match=r"give version \(1\) or version_label \('a'\), not both"):
        model_path("m", version=1, version_label="a")
    with pytest.raises(InvalidRequest, match="version must be a non-negative int, got -1"):
        model_path("m", version=-1)
    with pytest.raises(InvalidRequest, match="version must be a non-negative int, got True"):
        model_path("m", version=True)

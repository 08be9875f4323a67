"""The REST face over real HTTP: paths, errors, status mapping, transport limits, metrics."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.model_server.config import ServerOptions
from serving.model_server.metrics import DEFAULT_PROMETHEUS_PATH
from serving.model_server.rest_server import RestServer
from serving.model_server.server import ModelServer


@pytest.fixture(scope="module")
def server(tfserving_testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    monitoring = tmp_path_factory.mktemp("cfg") / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    options = ServerOptions(
        port=0,
        rest_api_port=0,
        bind_address="127.0.0.1",
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        monitoring_config_file=str(monitoring),
        file_system_poll_wait_seconds=0,
    )
    with ModelServer(options, enable_rest=True) as running:
        yield running


def request(server: ModelServer, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def test_predict_row_and_columnar(server: ModelServer) -> None:
    status, ctype, body = request(
        server, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0, 2.0, 5.0]}'
    )
    assert (status, ctype) == (200, "application/json")
    assert body == b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'
    status, _, body = request(
        server, "POST", "/v1/models/half_plus_two/versions/123:predict", b'{"inputs": {"x": [[1.0], [3.0]]}}'
    )
    assert status == 200 and json.loads(body) == {"outputs": [[2.5], [3.5]]}


def test_lenient_shapes_like_tf_serving(server: ModelServer) -> None:
    # x is declared [-1, 1]; TF Serving does not check request shapes against it.
    status, _, body = request(
        server, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [2.0, 3.0, 4.0]}'
    )
    assert status == 200 and json.loads(body) == {"predictions": [3.0, 3.5, 4.0]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        (
            "POST",
            "/v1/models/missing:predict",
            b'{"instances": [1.0]}',
            404,
            "Servable not found for request: Latest(missing)",
        ),
        (
            "POST",
            "/v1/models/half_plus_two/versions/7:predict",
            b'{"instances": [1.0]}',
            404,
            "Servable not found for request: Specific(half_plus_two, 7)",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            b'{"signature_name": "nope", "instances": [1.0]}',
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            b"{bad",
            400,
            "JSON Parse error: Missing a name for object member. at offset: 1",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:PREDICT",
            b"{}",
            400,
            "Malformed request: POST /v1/models/half_plus_two:PREDICT",
        ),
        ("PUT", "/v1/models/half_plus_two", b"", 400, "Malformed request: PUT /v1/models/half_plus_two"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/models/missing", None, 404, "Could not find any versions of model missing"),
        (
            "GET",
            "/v1/models/half_plus_two/versions/9",
            None,
            404,
            "Could not find version 9 of model half_plus_two",
        ),
        (
            "GET",
            "/v1/models/half_plus_two/versions/99999999999999999999",
            None,
            400,
            "Failed to convert version: 99999999999999999999 to numeric.",
        ),
        (
            "GET",
            "/v1/models/half_plus_two/labels/stable/metadata",
            None,
            400,
            "Unrecognized servable version label: stable",
        ),
    ],
)
def test_errors_and_status_mapping(server, method, path, body, status, error) -> None:
    got_status, ctype, got = request(server, method, path, body)
    assert got_status == status and ctype == "application/json"
    assert json.loads(got) == {"error": error}


def test_ragged_and_wrong_type_bodies_are_400(server: ModelServer) -> None:
    for body in (
        b'{"instances": [[1.0], [1.0, 2.0]]}',
        b'{"instances": ["a"]}',
        b'{"inputs": {"y": [1.0]}}',
        b"[]",
    ):
        status, _, got = request(server, "POST", "/v1/models/half_plus_two:predict", body)
        assert status == 400, got
        assert "error" in json.loads(got)


def test_model_name_is_url_decoded_and_never_a_path(server: ModelServer) -> None:
    status, _, got = request(server, "POST", "/v1/models/..%2F..%2Fetc:predict", b'{"instances": [1.0]}')
    assert status == 404 and json.loads(got) == {"error": "Servable not found for request: Latest(../../etc)"}


def test_status_and_metadata_json(server: ModelServer) -> None:
    status, _, body = request(server, "GET", "/v1/models/half_plus_two")
    assert status == 200
    assert json.loads(body) == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert body.startswith(b'{\n "model_version_status": [\n  {\n   "version": "123",')
    status, _, body = request(server, "GET", "/v1/models/half_plus_two/versions/123/metadata")
    meta = json.loads(body)
    assert meta["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    assert sorted(meta["metadata"]["signature_def"]["signature_def"]) == [
        "classify_x_to_y",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "regress_x_to_y2",
        "serving_default",
    ]


def test_unknown_paths_are_plain_404(server: ModelServer) -> None:
    status, _, body = request(server, "GET", "/healthz")
    assert (status, body) == (404, b"")


def test_keep_alive_chunked_and_expect_continue(server: ModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        for x, want in ((1.0, 2.5), (3.0, 3.5)):  # two requests on one connection
            conn.request(
                "POST", "/v1/models/half_plus_two:predict", body=json.dumps({"instances": [x]}).encode()
            )
            resp = conn.getresponse()
            assert json.loads(resp.read()) == {"predictions": [want]}
        chunks = iter([b'{"instances"', b": [5.0]}"])
        conn.request("POST", "/v1/models/half_plus_two:predict", body=chunks, encode_chunked=True)
        assert json.loads(conn.getresponse().read()) == {"predictions": [4.5]}
    finally:
        conn.close()
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        body = b'{"instances": [7.0]}'
        head = (
            "POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"[5.5\n    ]\n}")


def test_oversized_body_is_413_without_reading_it(server: ModelServer) -> None:
    small = RestServer(server.manager, bind_address="127.0.0.1", port=0, max_body_bytes=64)
    port = small.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n")
            reply = sock.recv(4096)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413 ")
        assert json.loads(body) == {"error": "Request body of 1000000 bytes exceeds the limit of 64 bytes"}
        # A body within the limit on the same small server still works.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/models/half_plus_two:predict", body=b'{"instances": [1.0]}')
        assert json.loads(conn.getresponse().read()) == {"predictions": [2.5]}
        conn.close()
    finally:
        small.stop()


def test_prometheus_metrics_count_requests(server: ModelServer) -> None:
    request(server, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0]}')
    request(server, "POST", "/v1/models/nothere:predict", b'{"instances": [1.0]}')
    status, ctype, body = request(server, "GET", DEFAULT_PROMETHEUS_PATH)
    text = body.decode()
    assert status == 200 and ctype == "text/plain"
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="nothere",status="NOT_FOUND"} 1' in text
    ok_line = next(
        line
        for line in text.splitlines()
        if line.startswith(':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"}')
    )
    assert int(ok_line.rsplit(" ", 1)[1]) >= 1
    assert (
        ':tensorflow:serving:request_latency_count{model_name="half_plus_two",API="Predict",entrypoint="REST"}'
        in text
    )


def test_gzip_request_bodies(server: ModelServer) -> None:
    body = gzip.compress(b'{"instances": [1.0, 3.0]}')
    status, _, got = request(
        server, "POST", "/v1/models/half_plus_two:predict", body, headers={"Content-Encoding": "gzip"}
    )
    assert status == 200 and json.loads(got) == {"predictions": [2.5, 3.5]}
    status, _, got = request(
        server, "POST", "/v1/models/half_plus_two:predict", b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    assert status == 400 and json.loads(got) == {"error": "Failed to uncompress the gzip request body"}


def test_gzip_bomb_is_refused() -> None:
    from serving.model_server.http_transport import BodyTooLarge, gunzip

    bomb = gzip.compress(b"0" * 100_000)
    assert gunzip(bomb, 100_000) == b"0" * 100_000
    with pytest.raises(BodyTooLarge):
        gunzip(bomb, 99_999)


def test_rest_api_timeout_answers_504(server: ModelServer) -> None:
    # 200k instances take far longer than 1 ms to parse and run; the face stops waiting.
    impatient = RestServer(server.manager, bind_address="127.0.0.1", port=0, timeout_ms=1)
    port = impatient.start()
    try:
        body = json.dumps({"instances": [1.0] * 200_000}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/models/half_plus_two:predict", body=body)
        resp = conn.getresponse()
        assert resp.status == 504 and json.loads(resp.read()) == {"error": "Deadline Exceeded"}
        conn.close()
    finally:
        impatient.stop()


def test_cors_headers_and_preflight_as_http_server_cc(server: ModelServer) -> None:
    """--rest_api_enable_cors_support adds AddCORSHeaders' three headers to every answer; an
    OPTIONS preflight is 200 with an http(s) Origin, else FAILED_PRECONDITION (400)."""
    cors = RestServer(server.manager, bind_address="127.0.0.1", port=0, enable_cors=True)
    port = cors.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/models/half_plus_two:predict", body=b'{"instances": [1.0]}')
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())) == (200, {"predictions": [2.5]})
        assert resp.getheader("Access-Control-Allow-Origin") == "*"
        assert resp.getheader("Access-Control-Allow-Methods") == "POST, GET"
        assert resp.getheader("Access-Control-Allow-Headers") == "Content-Type"
        conn.request("OPTIONS", "/v1/models/half_plus_two:predict", headers={"Origin": "https://app.example"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"")
        conn.request("OPTIONS", "/v1/models/half_plus_two:predict")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (400, b"")
        conn.close()
    finally:
        cors.stop()
    # Off by default: no CORS headers.
    status, _, _ = request(server, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0]}')
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    conn.request("GET", "/v1/models/half_plus_two")
    resp = conn.getresponse()
    resp.read()
    assert status == 200 and resp.getheader("Access-Control-Allow-Origin") is None
    conn.close()


def test_busy_port_is_a_clear_error(server: ModelServer) -> None:
    with pytest.raises(RuntimeError, match=f"could not bind REST server to 127.0.0.1:{server.rest_port}"):
        RestServer(server.manager, bind_address="127.0.0.1", port=server.rest_port)

"""Issue 15's hostile REST bodies, one test each, over real HTTP (TF Serving 2.21's answers).

Expected texts come from rapidjson's reader (offsets are byte offsets: `startOffset` of a
number, the backslash of a bad escape) and json_tensor.cc at 2.21; where this server has a
limit TF Serving lacks (nesting depth, tensor rank), the answer is a 400 naming the limit.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serving.model_server.errors import ServingError
from serving.model_server.json_debug import MAX_QUOTE_CHARS
from serving.model_server.json_parse import CAREFUL_MAX_DEPTH, parse_body
from serving.model_server.json_text import error_body
from serving.model_server.server import ModelServer
from tests.serving.half_plus_two import half_plus_two_options

PREDICT = "/v1/models/half_plus_two:predict"
TOO_BIG = "JSON Parse error: Number too big to be stored in double. at offset: {}"
SURROGATE = "JSON Parse error: The surrogate pair in string is invalid. at offset: {}"


@pytest.fixture(scope="module")
def server(tfserving_testdata: Path) -> Iterator[ModelServer]:
    with ModelServer(half_plus_two_options(tfserving_testdata), enable_rest=True) as running:
        yield running


def call(server: ModelServer, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def error_of(server: ModelServer, path: str, body: bytes | None = None) -> str:
    status, payload = call(server, path, body)
    assert status == 400, (status, payload[:300])
    return json.loads(payload)["error"]


def predictions(server: ModelServer, body: bytes) -> list[float]:
    status, payload = call(server, PREDICT, body)
    assert status == 200, payload[:300]
    return json.loads(payload)["predictions"]


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (b'{"instances": "\\ud800"}', 15),  # the body: a high surrogate alone
        (b'{"instances": ["\\udc00"]}', 16),  # a low surrogate alone
        (b'{"instances": ["ab\\ud800\\u0041"]}', 18),  # high followed by no low half
        (b'{"instances": ["\\\\ud800", "\\ud800x"]}', 27),  # an escaped backslash is no escape
    ],
)
def test_lone_surrogates_are_rapidjsons_parse_error(server: ModelServer, body: bytes, offset: int) -> None:
    assert error_of(server, PREDICT, body) == SURROGATE.format(offset)


def test_a_surrogate_pair_is_one_character(server: ModelServer) -> None:
    message = error_of(server, PREDICT, b'{"instances": ["\\ud83d\\ude00"]}')
    assert message.endswith('JSON Value: "\U0001f600" Type: String is not of expected type: float')


@pytest.mark.parametrize(
    ("number", "offset"),
    [
        (b"9" * 5000, 15),  # beyond Python's 4,300-digit int guard
        (str(2**1024).encode(), 15),
        (b"-" + str(2**1024).encode(), 15),  # rapidjson's startOffset is the sign
        (b"1e400", 15),
    ],
)
def test_numbers_beyond_a_double_are_too_big(server: ModelServer, number: bytes, offset: int) -> None:
    assert error_of(server, PREDICT, b'{"instances": [' + number + b"]}") == TOO_BIG.format(offset)


def test_offsets_count_bytes_not_characters(server: ModelServer) -> None:
    body = '{"instances": ["é", 1e400]}'.encode()
    assert error_of(server, PREDICT, body) == TOO_BIG.format(21)  # é is two bytes


def test_nan_bodies_take_the_careful_path_in_document_order(server: ModelServer) -> None:
    assert predictions(server, b'{"instances": [NaN, -Infinity, 1e-400]}')[2] == 2.0
    assert error_of(server, PREDICT, b'{"instances": [NaN, 1e999]}') == TOO_BIG.format(20)
    assert error_of(server, PREDICT, b'{"instances": [NaN "\\ud800", 1e999]}') == (
        "JSON Parse error: Missing a comma or ']' after an array element. at offset: 19"
    )


def test_precision_is_not_checked_as_since_tf_2_5(server: ModelServer) -> None:
    # json_tensor_test.cc FloatTensorWithPrecisionLoss / FloatTensorThatExceedsMaxReturnsInf
    y = predictions(server, b'{"instances": [1435774380, 16777217, 1e39]}')
    assert y[0] == pytest.approx(float(np.float32(1435774380)) / 2 + 2)
    assert y[1] == float(np.float32(np.float32(16777217) * 0.5 + 2))
    assert y[2] == float("inf")


def test_huge_versions_fail_to_convert(server: ModelServer) -> None:
    assert error_of(server, "/v1/models/half_plus_two/versions/9223372036854775808") == (
        "Failed to convert version: 9223372036854775808 to numeric."
    )
    message = error_of(server, "/v1/models/half_plus_two/versions/" + "9" * 5000)
    assert message == "Failed to convert version: " + "9" * MAX_QUOTE_CHARS + "... to numeric."
    status, _ = call(server, "/v1/models/half_plus_two/versions/" + "0" * 30 + "123")
    assert status == 200  # leading zeros are not digits that count


def test_classify_integers_outside_int64_are_doubles(server: ModelServer) -> None:
    def classify(x: str) -> tuple[int, bytes]:
        body = '{"signature_name": "classify_x_to_y", "examples": [{"x": ' + x + "}]}"
        return call(server, "/v1/models/half_plus_two:classify", body.encode())

    status, payload = classify(str(-(2**63) - 1))
    assert status == 200, payload
    assert json.loads(payload)["results"][0][0][1] == pytest.approx(np.float32(-(2.0**63)) / 2 + 2, rel=1e-6)
    status, payload = classify(str(2**63))
    assert status == 400
    assert json.loads(payload)["error"] == "Feature: x has uint64_t element. Only int64_t is supported."


@pytest.mark.parametrize("rank", [65, 300, 2_000])
def test_lists_deeper_than_numpy_are_a_400(server: ModelServer, rank: int) -> None:
    body = b'{"inputs": ' + b"[" * rank + b"1.0" + b"]" * rank + b"}"
    message = error_of(server, PREDICT, body)
    depth_limit = rank + 1 > 1024  # orjson's depth; the careful path then stops at 900
    if depth_limit:
        assert message.startswith(
            f"JSON Parse error: Arrays and objects nested deeper than {CAREFUL_MAX_DEPTH}"
        )
    else:
        assert message.startswith("JSON value nests lists deeper than 64 levels")


def test_deep_objects_name_the_limit_and_brackets_in_strings_do_not_count(server: ModelServer) -> None:
    body = b'{"a":' * 2_000 + b"1" + b"}" * 2_000
    assert error_of(server, PREDICT, body) == (
        f"JSON Parse error: Arrays and objects nested deeper than {CAREFUL_MAX_DEPTH} levels "
        "(a limit of this server; TF Serving has none). at offset: 4500"
    )
    quoted = b'{"instances": ["' + b"[{" * 2_000 + b'"], "x": NaN}'
    assert "nested deeper" not in error_of(server, PREDICT, quoted)


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [1], "inputs": [' + b",".join([b"1.5"] * 100_000) + b"]}",
        b'{"inputs": {"b64": "' + b"A" * 400_000 + b'"}}',
        b'{"instances": [' + b",".join([b'"abc"'] * 100_000) + b"]}",
        b'{"signature_name": 3, "inputs": [' + b",".join([b'{"k": [1, 2, 3]}'] * 50_000) + b"]}",
    ],
)
def test_errors_quote_a_bounded_excerpt(server: ModelServer, body: bytes) -> None:
    status, payload = call(server, PREDICT, body)
    assert status == 400 and len(body) > 300_000
    assert len(payload) <= 2 * MAX_QUOTE_CHARS + 300, len(payload)


def test_invalid_utf8_names_its_byte() -> None:
    # rapidjson does not validate UTF-8 (TF Serving passes the bytes on); this server refuses
    # them with rapidjson's own text, documented in docs/serving.md.
    with pytest.raises(ServingError, match=r"Invalid encoding in string\. at offset: 16$"):
        parse_body(b'{"instances": ["\xff"]}')


def test_error_bodies_survive_lone_surrogates() -> None:
    body = error_body("bad \ud800 name")
    assert json.loads(body) == {"error": "bad \ud800 name"}
    body.decode("ascii")  # escaped, so it is valid UTF-8 too


def test_the_server_still_answers(server: ModelServer) -> None:
    assert predictions(server, b'{"instances": [1.0, 2.0, 5.0]}') == [2.5, 3.0, 4.5]

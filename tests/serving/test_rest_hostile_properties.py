"""Generated hostile REST requests against a running model server (issue 15 item 6).

Each example is a request a careless or hostile client could send: JSON documents of any shape
with huge or non-finite numbers, lone surrogates and deep nesting, then maybe truncated, spliced
with stray bytes or invalid UTF-8, on every REST path. Each must answer below 500 with TF
Serving's error body (short, valid JSON) and leave the server answering a good request.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.model_server.server import ModelServer
from tests.serving.half_plus_two import half_plus_two_options

MAX_ERROR_BYTES = 2_000  # a bounded excerpt of the input, whatever its size

NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**400, -(10**400)]),
)
TEXT = st.text(st.characters(codec=None), max_size=12)  # lone surrogates included
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, st.builds(lambda s: {"b64": s}, TEXT))
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.sampled_from(["x", "y", "b64", ""]), inner, max_size=3),
    ),
    max_leaves=25,
)
KEYS = st.sampled_from(["instances", "inputs", "signature_name", "examples", "context", "x", "\udfff"])
DOCUMENTS = st.one_of(st.dictionaries(KEYS, VALUES, max_size=4), VALUES)
SIGNATURES = st.sampled_from(["", "serving_default", "classify_x_to_y", "regress_x_to_y", "nope"])
PATHS = st.one_of(
    st.tuples(
        st.just("POST"),
        st.sampled_from(["half_plus_two", "other", "%ED%A0%80", "a%00b"]),
        st.sampled_from(["", "/versions/123", "/versions/" + "9" * 30, "/labels/x", "/labels/%FF"]),
        st.sampled_from([":predict", ":classify", ":regress"]),
    ),
    st.tuples(
        st.just("GET"),
        st.sampled_from(["half_plus_two", "other"]),
        st.sampled_from(["", "/versions/1", "/versions/" + "1" * 5000]),
        st.sampled_from(["", "/metadata"]),
    ),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A JSON text of a generated document, maybe damaged."""
    doc = draw(DOCUMENTS)
    if isinstance(doc, dict) and draw(st.booleans()):
        doc["signature_name"] = draw(SIGNATURES)
    body = json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "truncate", "splice", "deep", "bom"]))
    if damage == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "splice":
        at = draw(st.integers(0, len(body)))
        stray = draw(
            st.sampled_from([b"\xff", b"\xed\xa0\x80", b"[", b"}", b"\\u", b"1e999", b"NaN", b"\x00"])
        )
        body = body[:at] + stray + body[at:]
    elif damage == "deep":
        depth = draw(st.sampled_from([63, 65, 255, 899, 901, 1_025, 3_000]))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"x":', b"}")]))
        body = b'{"instances": ' + opener * depth + body + closer * depth + b"}"
    elif damage == "bom":
        body = b"\xef\xbb\xbf" + body
    return body


@pytest.fixture(scope="module")
def server(tfserving_testdata: Path) -> Iterator[ModelServer]:
    with ModelServer(half_plus_two_options(tfserving_testdata), enable_rest=True) as running:
        yield running


def call(server: ModelServer, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=PATHS, body=bodies())
def test_hostile_requests_answer_a_client_error(
    server: ModelServer, target: tuple[str, str, str, str], body: bytes
) -> None:
    method, model, middle, verb = target
    status, payload = call(
        server, method, f"/v1/models/{model}{middle}{verb}", body if method == "POST" else None
    )
    assert status < 500, payload[:300]
    answer = json.loads(payload)
    if status != 200:
        assert isinstance(answer["error"], str) and answer["error"]
        assert len(payload) <= MAX_ERROR_BYTES, payload[:300]
    good = call(server, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [1.0, 2.0]}')
    assert good == (200, b'{\n    "predictions": [2.5, 3.0\n    ]\n}')

"""/recommend answers a client's mistake with a 4xx and a bounded JSON error, and bounds each request's cost."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.service.app import create_app
from tests.recommender_client.test_service import settings_for

LIMITS = {
    "max_body_bytes": 4096,
    "max_string_length": 16,
    "max_context_keys": 2,
    "max_context_bytes": 64,
    "max_request_candidates": 30,
    "max_candidates": 10,
}


@contextlib.contextmanager
def limited_app(artifacts_dir: Path, **overrides: Any) -> Iterator[FastAPI]:
    """The real app with ``LIMITS`` (and ``overrides``) over a local scorer, its lifespan running."""
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    application = create_app(settings_for(artifacts_dir, **(LIMITS | overrides)), scorer=scorer)
    with TestClient(application):
        yield application


@pytest.fixture()
def app(artifacts_dir: Path) -> Iterator[FastAPI]:
    with limited_app(artifacts_dir) as application:
        yield application


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: bytes) -> tuple[int, Any]:
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert response.headers["content-type"] == "application/json"
    return response.status_code, json.loads(response.content.decode("utf-8"))  # strict UTF-8


def entry(kind: str, loc: list[Any], msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}


SURROGATE = "(a \\ud800-\\udfff escape must be half of a surrogate pair)"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        # a lone surrogate anywhere: JSON allows the escape, Unicode does not (was a 500)
        (rb'{"user_id": "\ud800"}', f"unexpected end of hex escape at line 1 column 20 {SURROGATE}"),
        (
            rb'{"user_id": "u1", "context": {"\udc00x": 1}}',
            "lone leading surrogate in hex escape at line 1 column 37",
        ),
        (rb'{"user_id": "u1", "candidates": ["i1", "\udfff"]}', "lone leading surrogate in hex escape"),
        # bytes that are not UTF-8 (0xff never occurs in UTF-8; 0xc3 must be followed by 0x80-0xbf)
        (b'{"user_id": "\xff"}', "invalid unicode code point at line 1 column 14"),
        (b'{"user_id": "u\xc3("}', "invalid unicode code point at line 1 column 15"),
        (b"", "EOF while parsing a value at line 1 column 0"),
        (b"[" * 300, "recursion limit exceeded at line 1 column 202"),
    ],
)
def test_bodies_that_are_not_json_are_400(client: TestClient, body: bytes, detail: str) -> None:
    status, answer = post(client, body)
    assert status == 400
    assert answer["detail"].startswith("body is not valid JSON: " + detail)


def test_numbers_python_cannot_print_are_refused_or_quoted_by_size(
    client: TestClient, artifacts_dir: Path
) -> None:
    """Python's int-to-str limit (4,300 digits) must not turn an error message into a 500."""
    assert post(client, b'{"user_id": "u1", "k": 1%s}' % (b"0" * 4000)) == (
        400,
        {"detail": "k must be between 1 and 20, got <int of 13288 bits>"},
    )
    with TestClient(create_app(settings_for(artifacts_dir), scorer=LocalScorer({}))) as default_limits:
        status, answer = post(default_limits, b'{"user_id": "u1", "k": 1%s}' % (b"0" * 5000))
    assert (status, answer) == (
        400,
        {"detail": "body is not valid JSON: number out of range at line 1 column 4325"},
    )


def test_nan_infinity_and_out_of_range_now_are_422_with_strict_json(client: TestClient) -> None:
    finite = "Input should be a finite number"
    cases = {
        b'{"user_id": "u1", "k": NaN}': [entry("finite_number", ["k"], finite, "nan")],
        b'{"user_id": "u1", "now": Infinity}': [entry("finite_number", ["now"], finite, "inf")],
        b'{"user_id": "u1", "now": -Infinity}': [entry("finite_number", ["now"], finite, "-inf")],
        b'{"user_id": "u1", "now": NaN}': [entry("finite_number", ["now"], finite, "nan")],
        b'{"user_id": "u1", "now": -1}': [
            entry("greater_than_equal", ["now"], "Input should be greater than or equal to 0", -1)
        ],
        b'{"user_id": "u1", "now": 1e300}': [
            entry("less_than_equal", ["now"], "Input should be less than or equal to 253402300799", 1e300)
        ],
        # NaN in a field that is refused for another reason: its echo broke the 422 before
        b'{"user_id": "u1", "surprise": NaN}': [
            entry("extra_forbidden", ["surprise"], "Extra inputs are not permitted", "nan")
        ],
        b'{"user_id": "u1", "context": {"hour": [NaN]}}': [
            entry(
                "context_value_type",
                ["context", "hour"],
                "Input should be a string, number, boolean, null or list of strings",
                "[nan]",
            )
        ],
    }
    for body, detail in cases.items():
        assert post(client, body) == (422, {"detail": detail}), body


def test_context_values_beyond_the_contract_are_400(client: TestClient) -> None:
    hour = "context['hour']: feature 'hour' takes an int64, got {} (outside -2**63..2**63-1)"
    assert post(client, b'{"user_id": "u1", "context": {"hour": 9223372036854775808}}') == (
        400,
        {"detail": hour.format(2**63)},
    )
    assert post(client, b'{"user_id": "u1", "context": {"hour": -9223372036854775809}}') == (
        400,
        {"detail": hour.format(-(2**63) - 1)},
    )
    too_big = 10**100  # 333 bits: quoted by its size only
    assert post(client, b'{"user_id": "u1", "context": {"hour": %d}}' % too_big) == (
        400,
        {"detail": hour.format("<int of 333 bits>")},
    )
    assert post(client, b'{"user_id": "u1", "context": {"position": 9223372036854775808, "hourz": 1}}') == (
        400,
        {
            "detail": "context has keys the feature contract does not know: ['position', 'hourz'] "
            "(context features: ['device', 'hour'])"
        },
    )


def test_string_key_and_size_limits(client: TestClient) -> None:
    long_id = "u" * 17
    assert post(client, json.dumps({"user_id": long_id}).encode()) == (
        422,
        {
            "detail": [
                entry("string_too_long", ["user_id"], "String should have at most 16 characters", long_id)
            ]
        },
    )
    status, _ = post(client, json.dumps({"user_id": "u" * 16}).encode())
    assert status == 200
    assert post(client, json.dumps({"user_id": "u1", "candidates": ["i1", "x" * 17]}).encode()) == (
        422,
        {
            "detail": [
                entry(
                    "string_too_long", ["candidates", 1], "String should have at most 16 characters", "x" * 17
                )
            ]
        },
    )
    assert post(client, json.dumps({"user_id": "u1", "context": {"device": ["a", "d" * 17]}}).encode()) == (
        422,
        {
            "detail": [
                entry(
                    "string_too_long",
                    ["context", "device"],
                    "String should have at most 16 characters",
                    ["a", "d" * 17],
                )
                | {"input": str(["a", "d" * 17])}
            ]
        },
    )
    three = {"device": "ios", "hour": 1, "x": 2}
    assert post(client, json.dumps({"user_id": "u1", "context": three}).encode()) == (
        422,
        {
            "detail": [
                entry(
                    "too_long",
                    ["context"],
                    "Dictionary should have at most 2 items after validation, not more",
                    "{'device': 'ios', 'hour': 1, 'x': 2}",
                )
            ]
        },
    )
    # 5 strings of 16 bytes: 80 > max_context_bytes=64 (the two-byte é counts twice)
    device = ["é" * 8] + ["d" * 16] * 4
    assert post(client, json.dumps({"user_id": "u1", "context": {"device": device}}).encode()) == (
        400,
        {
            "detail": "context strings hold 80 bytes, more than max_context_bytes=64 (the context is "
            "repeated on every candidate's row of the Predict)"
        },
    )


def test_candidate_limits_are_400_naming_the_limit_never_a_silent_cut(client: TestClient) -> None:
    ids = [f"c{i}" for i in range(31)]
    assert post(client, json.dumps({"user_id": "u1", "candidates": ids}).encode()) == (
        400,
        {"detail": "candidates must hold 1 to 30 ids (max_request_candidates), got 31"},
    )
    assert post(client, json.dumps({"user_id": "u1", "candidates": ids[:11]}).encode()) == (
        400,
        {
            "detail": "candidates hold 11 distinct ids, more than max_candidates=10 (the most one request scores)"
        },
    )
    twice = ids[:10] * 3  # 30 entries, 10 distinct: scored whole
    status, answer = post(client, json.dumps({"user_id": "u1", "k": 20, "candidates": twice}).encode())
    assert status == 200 and answer["candidates"] == 10
    assert post(client, b'{"user_id": "u1", "candidates": []}') == (
        400,
        {"detail": "candidates must hold 1 to 30 ids, got 0"},
    )


def test_error_bodies_quote_a_bounded_excerpt(client: TestClient) -> None:
    huge = {"user_id": "u1", "k": "x" * 3000, "extra": list(range(400))}
    response = client.post("/recommend", content=json.dumps(huge).encode())
    assert response.status_code == 413  # first the body limit (4096)
    body = {"k": "x" * 1000, "extra": [[[[["deep"]]]]] + list(range(100))}
    status, answer = post(client, json.dumps(body).encode())
    assert status == 422
    by_field = {e["loc"][1]: e for e in answer["detail"]}
    assert by_field["k"]["input"] == "x" * 200 + "..."
    assert by_field["extra"]["input"] == "[[[[...]]], 0, 1, 2, 3, 4, ...]"
    missing = by_field["user_id"]["input"]  # the whole body, sketched
    # reprlib's sketch: six members of a list, three levels, strings cut to 80 characters in the middle
    assert missing == "{'extra': [[[...]], 0, 1, 2, 3, 4, ...], 'k': '" + "x" * 37 + "..." + "x" * 38 + "'}"
    many = {"user_id": "u1", "candidates": [{}] * 25}
    status, answer = post(client, json.dumps(many).encode())
    assert status == 422 and len(answer["detail"]) == 11
    assert answer["detail"][-1] == {"type": "too_many_errors", "loc": ["body"], "msg": "15 more not shown"}


def test_a_good_request_still_works_and_every_refusal_was_counted(client: TestClient) -> None:
    for body in (b"\xff", b'{"user_id": "u1", "k": NaN}', b'{"user_id": "u1", "k": 0}'):
        post(client, body)
    status, answer = post(client, b'{"user_id": "u2", "k": 2}')
    assert status == 200 and len(answer["items"]) == 2
    text = client.get("/metrics").text
    for line in (
        'ranker_requests_total{status="400"} 2.0',
        'ranker_requests_total{status="422"} 1.0',
        'ranker_requests_total{status="200"} 1.0',
        'ranker_errors_total{kind="invalid_json"} 1.0',
        'ranker_errors_total{kind="invalid_body"} 1.0',
        'ranker_errors_total{kind="bad_k"} 1.0',
    ):
        assert line in text
    assert 'status="500"' not in text


def test_start_up_refuses_a_contract_with_more_context_features_than_allowed(artifacts_dir: Path) -> None:
    settings = settings_for(artifacts_dir, max_context_keys=1)
    with pytest.raises(ValueError, match="2 context features, more than max_context_keys=1"):
        with TestClient(create_app(settings, scorer=LocalScorer({}))):
            pass

"""Generated hostile bodies and rules files against a running ranker: never a 5xx, always a JSON error.

Seeded (``derandomize=True``) with bounded example counts, so the suite is the same on every run
and adds a few seconds. Each example is followed by a good request that must still be answered.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts, save_artifacts
from recommender_client.recall.build import BuildConfig, build_artifacts
from recommender_client.service.app import create_app
from tests.recommender_client.conftest import tiny_contract, tiny_events, tiny_items, tiny_users
from tests.recommender_client.test_service import RULES, settings_for
from tests.recommender_client.test_service_limits import LIMITS

# database=None: no example database written into the working directory (derandomized anyway)
SEEDED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
GOOD = {"user_id": "u2", "k": 2, "context": {"device": "ios", "hour": 3}}
# An error body quotes at most ten entries of a few hundred characters.
MAX_ERROR_BYTES = 8192


@pytest.fixture(scope="module")
def ranker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    """One running app for the whole module (hypothesis reruns a test body, not its fixtures)."""
    root = tmp_path_factory.mktemp("hostile")
    contract = tiny_contract()
    artifacts = build_artifacts(
        tiny_events(),
        contract=contract,
        items=tiny_items(),
        users=tiny_users(),
        config=BuildConfig(half_life_days=1.0, cf_neighbors=3, cf_window=5, history_len=10),
    )
    save_artifacts(artifacts, root / "artifacts")
    contract.save(root / "artifacts")
    rules = root / "rules.yaml"
    rules.write_text(RULES)
    app_settings = settings_for(
        root / "artifacts", rules_path=rules, rules_reload_interval_s=0, **(LIMITS | {"max_k": 20})
    )
    scorer = LocalScorer(load_artifacts(root / "artifacts").popularity_of(), intercept=0.0, slope=1.0)
    with TestClient(create_app(app_settings, scorer=scorer), raise_server_exceptions=False) as client:
        yield client, rules


def _reject_constant(name: str) -> Any:
    raise ValueError(f"the answer holds {name}, which is not JSON")


def check_answer(client: TestClient, body: bytes) -> None:
    """No 5xx; a strict JSON answer (UTF-8, no NaN); a bounded error; then a good request works."""
    response = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, (body[:200], response.status_code, response.content[:300])
    assert response.headers["content-type"] == "application/json"
    answer = json.loads(response.content.decode("utf-8"), parse_constant=_reject_constant)
    if response.status_code >= 400:
        assert set(answer) == {"detail"} and isinstance(answer["detail"], (str, list))
        assert len(response.content) <= MAX_ERROR_BYTES
    else:
        assert response.status_code == 200 and isinstance(answer["items"], list)
    good = client.post("/recommend", json=GOOD)
    assert good.status_code == 200 and len(good.json()["items"]) == 2


SURROGATES = st.characters(categories=["Cs"])
TEXT = st.text(
    st.one_of(st.characters(), SURROGATES, st.sampled_from('"\\|\x00\u2028é')), max_size=40
) | st.sampled_from(["", "u1", "i2", "ios", "x" * 17, "x" * 5000, "\ud800", "\udbff\udc00"])
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**400, 0, -1, 1, 20, 21]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 3.5e38, 253_402_300_800.0, 1.7e9]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(TEXT, inner, max_size=6),
    max_leaves=30,
)
KEYS = st.sampled_from(["user_id", "k", "context", "candidates", "now"]) | TEXT
CONTEXT_KEYS = st.sampled_from(["device", "hour", "position"]) | TEXT


def dumps(value: Any) -> bytes:
    """Python's JSON writer: NaN and Infinity as bare words, lone surrogates as \\udXXX escapes."""
    return json.dumps(value, allow_nan=True).encode("ascii")


@SEEDED
@given(body=st.binary(max_size=600))
def test_arbitrary_bytes(ranker: tuple[TestClient, Path], body: bytes) -> None:
    check_answer(ranker[0], body)


@SEEDED
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "user_id": st.one_of(TEXT, NUMBERS, VALUES),
            "k": st.one_of(NUMBERS, VALUES),
            "context": st.dictionaries(CONTEXT_KEYS, VALUES, max_size=4) | VALUES,
            "candidates": st.lists(st.one_of(TEXT, NUMBERS, st.sampled_from(["i1", "i2", "i3"])), max_size=40)
            | VALUES,
            "now": st.one_of(NUMBERS, VALUES),
        },
    ),
    extra=st.dictionaries(KEYS, VALUES, max_size=2),
)
def test_request_shaped_bodies_with_hostile_values(
    ranker: tuple[TestClient, Path], body: dict[str, Any], extra: dict[str, Any]
) -> None:
    check_answer(ranker[0], dumps(body | extra))


@SEEDED
@given(
    depth=st.integers(min_value=1, max_value=5000),
    opener=st.sampled_from([b"[", b'{"a":', b'{"user_id": "u1", "context": {"hour": [']),
    closed=st.booleans(),
)
def test_deep_nesting(ranker: tuple[TestClient, Path], depth: int, opener: bytes, closed: bool) -> None:
    closer = {b"[": b"]", b'{"a":': b"}"}.get(opener, b"]")
    body = opener * depth + (b"1" + closer * depth if closed else b"")
    check_answer(ranker[0], body[: 3 * LIMITS["max_body_bytes"]])


@SEEDED
@given(
    valid=st.sampled_from([GOOD, {"user_id": "u1", "candidates": ["i1", "i2"], "now": 1.7e9}]),
    cut=st.integers(min_value=0, max_value=200),
    junk=st.binary(max_size=8),
)
def test_truncated_and_spliced_good_bodies(
    ranker: tuple[TestClient, Path], valid: dict[str, Any], cut: int, junk: bytes
) -> None:
    text = dumps(valid)
    check_answer(ranker[0], text[:cut] + junk + text[cut:])


YAML_TEXT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"rules:",
            b"rules: 3",
            b"version: 2\nrules: []",
            b"- a",
            b"rules: " + b"[" * 500,
        ]
    ),
    st.builds(
        lambda kind, field, value: f"rules: [{{name: r, type: {kind}, {field}: {value}}}]".encode(),
        st.sampled_from(["boost", "bury", "pin", "frequency_cap", "exploration", "teleport", "[a]"]),
        st.sampled_from(["multiplier", "items", "item", "position", "start", "slots", "1"]),
        st.sampled_from([".inf", ".nan", "1" + "0" * 400, "2024-02-30", "[]", "{}", "-1", "'x'", "[1, 1]"]),
    ),
)


@settings(SEEDED, max_examples=120)
@given(content=YAML_TEXT)
def test_rules_files_never_fail_a_request(ranker: tuple[TestClient, Path], content: bytes) -> None:
    client, rules = ranker
    rules.write_bytes(content)
    os.utime(rules, ns=(time.time_ns() + 10**9,) * 2)  # a new signature, even within one mtime tick
    check_answer(client, dumps(GOOD))
    rules.write_text(RULES)
    os.utime(rules, ns=(time.time_ns() + 2 * 10**9,) * 2)
    assert client.post("/recommend", json=GOOD).json()["rules_version"] != "none"


def test_the_suite_sees_refusals_but_no_server_error(ranker: tuple[TestClient, Path]) -> None:
    """After the generated runs, the metrics count 4xx answers and not a single 500."""
    text = ranker[0].get("/metrics").text
    counts = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ranker_requests_total{")
    }
    assert "500" not in counts and counts.get("200", 0) > 0
    assert math.fsum(v for k, v in counts.items() if k.startswith("4")) > 0

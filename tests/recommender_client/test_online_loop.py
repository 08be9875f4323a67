"""The online loop through the app: request ids, propensities, /events validation, idempotency, the join."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.conftest import T

EXPLORE = "rules:\n  - {name: explore, type: exploration, slots: [1]}\n"


def app_for(artifacts_dir: Path, tmp_path: Path, rules: str | None = None, **overrides) -> TestClient:
    values = {
        "artifacts_dir": artifacts_dir,
        "fixed_now": T,
        "quota_itemcf": 2,
        "quota_category_popularity": 2,
        "quota_new": 1,
        "quota_popularity": 10,
        "max_candidates": 10,
        "served_log_path": tmp_path / "logs" / "served.jsonl",
        "events_log_path": tmp_path / "logs" / "events.jsonl",
    }
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules)
        values["rules_path"] = tmp_path / "rules.yaml"
    settings = Settings(**(values | overrides))
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    return TestClient(create_app(settings, scorer=scorer))


@pytest.fixture()
def client(artifacts_dir: Path, tmp_path: Path):
    with app_for(artifacts_dir, tmp_path, EXPLORE) as c:
        yield c


def test_request_id_in_body_and_header(client: TestClient) -> None:
    response = client.post("/recommend", json={"user_id": "u2", "k": 2})
    rid = response.json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and response.headers["x-request-id"] == rid
    again = client.post("/recommend", json={"user_id": "u2", "k": 2})
    assert again.json()["request_id"] != rid
    mine = client.post("/recommend", json={"user_id": "u2", "k": 2}, headers={"X-Request-Id": "web-42:a.b_c"})
    assert mine.json()["request_id"] == "web-42:a.b_c" == mine.headers["x-request-id"]
    for bad in ("has space", "x" * 129, 'quote"d', ""):
        refused = client.post("/recommend", json={"user_id": "u2", "k": 2}, headers={"X-Request-Id": bad})
        assert refused.status_code == 400 and "X-Request-Id" in refused.json()["detail"]


def test_propensities_in_the_answer(client: TestClient) -> None:
    body = client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    # model order i2, i3, i6, i1, i5; slot 1 takes one of the 3 beyond the top 2
    assert body["items"][0]["item_id"] == "i2" and body["items"][0]["propensity"] == 1.0
    assert body["items"][1]["item_id"] in {"i6", "i1", "i5"}
    assert body["items"][1]["propensity"] == pytest.approx(1 / 3) and body["items"][1]["rules"] == ["explore"]
    assert body["model"] == "ctr" and body["model_version"] is None  # a LocalScorer reports no version


def test_a_degraded_answer_names_no_model(artifacts_dir: Path, tmp_path: Path) -> None:
    with app_for(artifacts_dir, tmp_path, request_deadline_s=0.001) as client:  # below the 5 ms reserve
        body = client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    assert body["degraded"] is True and body["degraded_reason"] == "deadline"
    assert body["model"] is None and body["model_version"] is None


def event(**overrides) -> dict:
    base = {
        "event_id": "e1",
        "request_id": "r1",
        "user_id": "u2",
        "item_id": "i2",
        "type": "click",
        "position": 0,
        "timestamp": T,
    }
    return base | overrides


@pytest.mark.parametrize(
    ("bad", "loc", "kind"),
    [
        ({"item_id": None}, ["body", "events", 0, "item_id"], "string_type"),
        ({"type": "purchase"}, ["body", "events", 0, "type"], "literal_error"),
        ({"timestamp": T - 8 * 86400}, ["body", "events", 0, "timestamp"], "value_error"),
        ({"timestamp": T + 3600}, ["body", "events", 0, "timestamp"], "value_error"),
        ({"user_id": "u" * 257}, ["body", "events", 0, "user_id"], "value_error"),
        ({"event_id": "a b"}, ["body", "events", 0, "event_id"], "string_pattern_mismatch"),
        ({"request_id": "r" * 129}, ["body", "events", 0, "request_id"], "string_too_long"),
        ({"position": -1}, ["body", "events", 0, "position"], "greater_than_equal"),
        ({"surprise": 1}, ["body", "events", 0, "surprise"], "extra_forbidden"),
    ],
)
def test_events_validation_names_the_field(client: TestClient, bad: dict, loc: list, kind: str) -> None:
    response = client.post("/events", json={"events": [event(**bad)]})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and error["type"] == kind


def test_events_batch_bounds(artifacts_dir: Path, tmp_path: Path) -> None:
    with app_for(artifacts_dir, tmp_path, events_max_batch=3) as client:
        too_many = client.post("/events", json={"events": [event(event_id=f"e{k}") for k in range(4)]})
        assert too_many.status_code == 413 and "events_max_batch" in too_many.json()["detail"]
        assert client.post("/events", json={"events": []}).status_code == 422
        broken = client.post("/events", content=b'{"events": [', headers={"content-type": "application/json"})
        assert broken.status_code == 400 and "not valid JSON" in broken.json()["detail"]


CAP = "rules:\n  - {name: cap-2, type: frequency_cap, max_impressions: 2, period_hours: 1}\n"


def items(client: TestClient, user: str, k: int = 2) -> list[str]:
    return [i["item_id"] for i in client.post("/recommend", json={"user_id": user, "k": k}).json()["items"]]


def test_an_event_counts_once_however_often_it_is_sent(artifacts_dir: Path, tmp_path: Path) -> None:
    with app_for(artifacts_dir, tmp_path, CAP, impressions_from="events") as client:
        assert items(client, "u2") == ["i2", "i3"]  # served, but only impression events count
        shown = event(type="impression", event_id="imp-1", timestamp=T - 60)
        assert client.post("/events", json={"events": [shown, shown]}).json() == {
            "accepted": 1,
            "duplicates": 1,
        }
        assert client.post("/events", json={"events": [shown]}).json() == {"accepted": 0, "duplicates": 1}
        assert items(client, "u2") == ["i2", "i3"]  # one impression of i2: under the cap of 2
        second = event(type="impression", event_id="imp-2", timestamp=T - 30)
        assert client.post("/events", json={"events": [second]}).json() == {"accepted": 1, "duplicates": 0}
        assert items(client, "u2") == ["i3", "i6"]  # two impressions of i2: capped


def test_join_command_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recommender_client.join_events", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--require-impression" in done.stdout


def test_join_labels_what_was_served_by_what_happened(artifacts_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from recommender_client.join_events import main

    with app_for(artifacts_dir, tmp_path) as client:
        first = client.post(
            "/recommend", json={"user_id": "u2", "k": 3}, headers={"X-Request-Id": "r1"}
        ).json()
        second = client.post("/recommend", json={"user_id": "u1", "k": 2}, headers={"X-Request-Id": "r2"})
        second = second.json()
        r2_items = [i["item_id"] for i in second["items"]]
        assert [i["item_id"] for i in first["items"]] == ["i2", "i3", "i6"]
        events = [
            event(event_id="a", request_id="r1", item_id="i3", position=1),  # click
            event(event_id="a", request_id="r1", item_id="i3", position=1),  # the same event again
            event(event_id="b", request_id="r1", item_id="i2", type="impression"),
            event(event_id="c", request_id="r1", item_id="i3", type="impression", position=1),
            event(event_id="d", request_id="r2", user_id="u1", item_id=r2_items[1], position=1),
            event(event_id="e", request_id="r9", item_id="i2"),  # a click on a list never logged
        ]
        assert client.post("/events", json={"events": events}).json() == {"accepted": 5, "duplicates": 1}
    logs, out = tmp_path / "logs", tmp_path / "table" / "train.parquet"
    args = ["--served", str(logs / "served.jsonl"), "--events", str(logs / "events.jsonl"), "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    table = pq.read_table(out).to_pydict()
    got = list(zip(table["request_id"], table["item_id"], table["position"], table["clicked"], strict=True))
    assert got == [
        ("r1", "i2", 0, 0),
        ("r1", "i3", 1, 1),
        ("r1", "i6", 2, 0),
        ("r2", r2_items[0], 0, 0),
        ("r2", r2_items[1], 1, 1),
    ]
    assert table["price"][:3] == [2.0, 3.0, 6.0] and table["age"][:3] == [40.0] * 3
    assert table["propensity"] == [1.0] * 5 and table["model_version"] == [None] * 5
    assert not out.with_name("train.parquet.tmp").exists()
    confirmed = tmp_path / "table" / "confirmed.parquet"
    assert main([*args, "--out", str(confirmed), "--require-impression"]) == 0
    only = pq.read_table(confirmed).to_pydict()
    assert list(zip(only["item_id"], only["clicked"], strict=True)) == [("i2", 0), ("i3", 1)]

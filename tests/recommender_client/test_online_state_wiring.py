"""What a user does online reaches the next /recommend: seen, frequency caps, pins and item-CF seeds.

Every test goes through the real app (``create_app`` with a LocalScorer over the tiny artefacts,
whose newest event is at T): events are posted to /events and the next /recommend is read.
Each one failed before the recommender read its ``OnlineState`` (clicks were only logged and the
stages read the offline artefacts alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.recall.sources import CategoryPopularityRecall, ItemCFRecall, recent_clicks
from recommender_client.service.app import create_app
from recommender_client.state.protocol import UserState
from tests.recommender_client.client.servers import free_port
from tests.recommender_client.conftest import DAY, T
from tests.recommender_client.test_service import settings_for

SEEN = "  - {name: seen, type: filter_seen, ttl_hours: 24}\n"
CAP = "  - {name: cap-2, type: frequency_cap, max_impressions: 2, period_hours: 1}\n"


def app_for(artifacts_dir: Path, tmp_path: Path, rules: str, *, now: float, **overrides: Any) -> TestClient:
    (tmp_path / "rules.yaml").write_text("rules:\n" + rules)
    settings = settings_for(artifacts_dir, rules_path=tmp_path / "rules.yaml", fixed_now=now, **overrides)
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    return TestClient(create_app(settings, scorer=scorer))


def served(client: TestClient, user: str, k: int = 10, **body: Any) -> list[tuple[str, str]]:
    """(item, recall source) of the answer, in order."""
    response = client.post("/recommend", json={"user_id": user, "k": k} | body)
    assert response.status_code == 200, response.text
    return [(i["item_id"], i["recall_source"]) for i in response.json()["items"]]


def ids(client: TestClient, user: str, k: int = 10, **body: Any) -> list[str]:
    return [item for item, _ in served(client, user, k, **body)]


def post(client: TestClient, *events: dict[str, Any]) -> None:
    response = client.post("/events", json={"events": list(events)})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": len(events), "duplicates": 0}


def event(event_id: str, user: str, item: str, kind: str, at: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "request_id": "r1",
        "user_id": user,
        "item_id": item,
        "type": kind,
        "position": 0,
        "timestamp": at,
    }


def test_a_click_hides_the_item_after_the_artefacts_ttl(artifacts_dir: Path, tmp_path: Path) -> None:
    # two days after the artefacts' newest event: their whole history is older than the 24 h TTL
    now = T + 2 * DAY
    with app_for(artifacts_dir, tmp_path, SEEN, now=now) as client:
        before = ids(client, "u2")
        assert before == ["i2", "i3", "i6", "i1"]  # u2's logged i1, i4, i2 are all out of the TTL
        post(client, event("c1", "u2", "i2", "click", now - 60))
        assert ids(client, "u2") == ["i3", "i6", "i1"]
        # a click older than the TTL hides nothing (it seeds recall, which may reorder the i3/i6 tie)
        post(client, event("c2", "u2", "i3", "click", now - 25 * 3600))
        assert sorted(ids(client, "u2")) == ["i1", "i3", "i6"]


def test_an_online_click_seeds_item_cf_at_once(artifacts_dir: Path, tmp_path: Path) -> None:
    with app_for(artifacts_dir, tmp_path, SEEN, now=T) as client:
        # u9 is not in the artefacts: no personal recall, everything comes from popularity / new
        assert {source for _, source in served(client, "u9")} <= {"popularity", "new"}
        post(client, event("c1", "u9", "i3", "click", T - 10))
        # i3's neighbours: sim(i2, i3) = 1/sqrt(3) > sim(i1, i3) = 0.5/sqrt(2); quota 2; i3 is seen
        answer = served(client, "u9")
        assert [item for item, source in answer if source == "itemcf"] == ["i2", "i1"]
        assert "i3" not in [item for item, _ in answer]


def test_online_clicks_are_the_first_seeds(loaded) -> None:
    # u3 clicked i2 then i6 in the artefacts; online i1 (newest), then i6 again and an unknown id
    state = UserState(clicked=("i1", "zz", "i6"), click_times=np.array([T + 3.0, T + 2.0, T + 1.0]))
    pos = loaded.catalog.index
    assert recent_clicks(loaded, "u3", 10) == [pos["i6"], pos["i2"]]
    assert recent_clicks(loaded, "u3", 10, state) == [pos["i1"], pos["i6"], pos["i2"]]
    assert recent_clicks(loaded, "u3", 1, state) == [pos["i1"]]
    # seeds i1, i6, i2 with weights 1, .9, .81: i3 = 0.5/sqrt(2) + .81/sqrt(3); every other
    # neighbour is a seed itself
    assert ItemCFRecall(loaded).recall("u3", T, 5, state=state) == [pos["i3"]]
    # from the artefacts alone: i1 = .9 * 2/sqrt(6) > i3 = .9/sqrt(3)
    assert ItemCFRecall(loaded).recall("u3", T, 5) == [pos["i1"], pos["i3"]]


def test_online_clicks_pick_the_categories(loaded) -> None:
    # u9 is unknown offline; one online click on i6 (category c) recalls category c's list
    state = UserState(clicked=("i6",), click_times=np.array([T]))
    row = loaded.category_names.index("c")
    lo, hi = loaded.category_offsets[row], loaded.category_offsets[row + 1]
    assert CategoryPopularityRecall(loaded).recall("u9", T, 5) == []
    assert (
        CategoryPopularityRecall(loaded).recall("u9", T, 5, state=state)
        == loaded.category_items[lo:hi].tolist()
    )
    assert hi > lo


@pytest.mark.parametrize("mode", ["served", "events"])
def test_impressions_count_once_from_one_source(artifacts_dir: Path, tmp_path: Path, mode: str) -> None:
    with app_for(artifacts_dir, tmp_path, CAP, now=T, impressions_from=mode) as client:
        assert ids(client, "u2", k=2) == ["i2", "i3"]  # served: i2 and i3 have 1 impression each
        post(client, event("s1", "u2", "i2", "impression", T - 30))  # served mode: logged, not applied
        if mode == "served":
            assert ids(client, "u2", k=2) == ["i2", "i3"]  # 1 impression each before: served again
            assert ids(client, "u2", k=2) == ["i6", "i1"]  # 2 each: both capped
        else:
            # the served lists counted nothing; the one event is under the cap of 2
            assert ids(client, "u2", k=2) == ["i2", "i3"]
            assert ids(client, "u2", k=2) == ["i2", "i3"]
            post(client, event("s2", "u2", "i2", "impression", T - 20))
            assert ids(client, "u2", k=2) == ["i3", "i6"]  # i2 capped by its two impression events


def test_a_clicked_pin_is_not_served(artifacts_dir: Path, tmp_path: Path) -> None:
    pin = "  - {name: pin-i4, type: pin, item: i4, position: 0}\n"
    with app_for(artifacts_dir, tmp_path, SEEN + pin, now=T + 2 * DAY) as client:
        # the request's own candidates leave i4 out, so the pin inserts it from the catalogue
        body = {"candidates": ["i1", "i2", "i3"]}
        assert ids(client, "u1", k=3, **body) == ["i4", "i2", "i3"]
        post(client, event("c1", "u1", "i4", "click", T + 2 * DAY - 1))
        assert ids(client, "u1", k=3, **body) == ["i2", "i3", "i1"]
        # recalled, it is dropped by the seen filter and the pin does not bring it back either
        assert "i4" not in ids(client, "u1")


def test_a_capped_pin_is_not_served(artifacts_dir: Path, tmp_path: Path) -> None:
    pin = "  - {name: pin-i4, type: pin, item: i4, position: 0}\n"
    with app_for(artifacts_dir, tmp_path, CAP + pin, now=T, impressions_from="events") as client:
        body = {"candidates": ["i1", "i2", "i3"]}
        assert ids(client, "u1", k=3, **body)[0] == "i4"
        post(
            client,
            event("s1", "u1", "i4", "impression", T - 20),
            event("s2", "u1", "i4", "impression", T - 10),
        )
        assert ids(client, "u1", k=3, **body) == ["i2", "i3", "i1"]


def test_a_store_that_is_down_fails_no_request(artifacts_dir: Path, tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with app_for(artifacts_dir, tmp_path, CAP, now=T, state_backend="redis", redis_url=down) as client:
        for _ in range(3):  # nothing is stored, so nothing is capped: the same answer each time
            assert ids(client, "u2", k=2) == ["i2", "i3"]
        post(client, event("c1", "u2", "i2", "click", T - 1))  # accepted, the write dropped
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["online_state"]["store"] == "RedisState"
        # 3 snapshot reads, 3 impression writes, the click's event-id claim and its write, each
        # failed (or, once the store's own breaker opens, skipped without a call): 8, none answered
        errors = ready["online_state"]["errors"]
        assert errors["read"] >= 1 and sum(errors.values()) == 8
        metrics = client.get("/metrics").text
        assert f'ranker_online_state_errors_total{{op="read"}} {float(errors["read"])}' in metrics

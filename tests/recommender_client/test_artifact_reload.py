"""Artefacts reloaded without a restart: a new set on disk is served after the check, a broken one is not.

The new set adds item i7, clicked by all three users at T, so it is the most popular item
(popularity 3 against i2's 2; half-life 1 day); the old set does not know it. Checks are run
on the app's own event loop through the TestClient's portal, so no test waits on the poll
interval, except the one that shows the lifespan polls by itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import (
    ITEMCF_FILE,
    ITEMS_FILE,
    MANIFEST,
    ArtifactError,
    RecallArtifacts,
    load_artifacts,
    save_artifacts,
)
from recommender_client.recall.build import BuildConfig, build_artifacts
from recommender_client.service.app import create_app
from tests.recommender_client.conftest import DAY, T, tiny_events, tiny_items, tiny_users
from tests.recommender_client.test_service import settings_for
from training.features import FeatureContract

CONFIG = BuildConfig(half_life_days=1.0, cf_neighbors=3, cf_window=5, history_len=10)


def with_i7(contract: FeatureContract) -> RecallArtifacts:
    events = tiny_events()
    for user in ("u1", "u2", "u3"):
        for key, value in (("user_id", user), ("item_id", "i7"), ("timestamp", T), ("label", 1)):
            events[key].append(value)
    items = tiny_items()
    for key, value in (
        ("item_id", "i7"),
        ("category", "c"),
        ("tags", "t1"),
        ("publish_time", T - 30 * DAY),
        ("price", 7.0),
    ):
        items[key].append(value)
    return build_artifacts(events, contract=contract, items=items, users=tiny_users(), config=CONFIG)


def app_for(artifacts_dir: Path, **overrides: Any) -> TestClient:
    # poll interval 0: the tests call check(); one test lets the lifespan poll by itself
    settings = settings_for(artifacts_dir, **({"artifacts_poll_interval_s": 0} | overrides))
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    return TestClient(create_app(settings, scorer=scorer))


def check(client: TestClient) -> bool:
    return bool(client.portal.call(client.app.state.artifact_watch.check))  # type: ignore[union-attr,attr-defined]


def ids(client: TestClient, user: str = "u9", k: int = 10) -> list[str]:
    response = client.post("/recommend", json={"user_id": user, "k": k})
    assert response.status_code == 200, response.text
    return [i["item_id"] for i in response.json()["items"]]


def metric(client: TestClient, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


def test_a_new_set_is_served_after_the_check(artifacts_dir: Path, contract: FeatureContract) -> None:
    with app_for(artifacts_dir) as client:
        assert "i7" not in ids(client) and client.get("/readyz").json()["items"] == 6
        assert check(client) is False  # nothing changed
        save_artifacts(with_i7(contract), artifacts_dir)  # in place, manifest last
        assert "i7" not in ids(client)  # not before the check
        assert check(client) is True
        assert "i7" in ids(client)
        ready = client.get("/readyz").json()
        assert ready["items"] == 7
        assert ready["artifacts"]["reloads"] == 1 and ready["artifacts"]["reload_error"] is None
        assert metric(client, "ranker_artifacts_reloads_total") == 1.0
        assert metric(client, "ranker_artifacts_reload_failures_total") == 0.0
        assert check(client) is False  # the same manifest is not loaded twice


def test_the_fallback_follows_the_reload(artifacts_dir: Path, contract: FeatureContract) -> None:
    # below the 5 ms reserve every answer degrades to the popularity fallback
    with app_for(artifacts_dir, fallback="popularity", request_deadline_s=0.001) as client:
        assert ids(client, k=2) == ["i2", "i3"]  # popularity 2 and 1 (i3 before i6 in recall order)
        save_artifacts(with_i7(contract), artifacts_dir)
        assert check(client) is True
        assert ids(client, k=2) == ["i7", "i2"]  # popularity 3 and 2 in the new set


def test_a_broken_set_keeps_the_old_one(
    artifacts_dir: Path, contract: FeatureContract, caplog: pytest.LogCaptureFixture
) -> None:
    with app_for(artifacts_dir) as client, caplog.at_level(logging.WARNING):
        before = ids(client)
        save_artifacts(with_i7(contract), artifacts_dir)
        (artifacts_dir / ITEMCF_FILE).write_bytes(b"PK\x03\x04 truncated")
        assert check(client) is False and check(client) is False
        assert ids(client) == before
        ready = client.get("/readyz").json()["artifacts"]
        assert ready["reloads"] == 0 and ready["reload_failures"] == 1
        assert ITEMCF_FILE in ready["reload_error"]
        assert metric(client, "ranker_artifacts_reload_failures_total") == 1.0
        warnings = [r for r in caplog.records if "artefact reload" in r.getMessage()]
        assert len(warnings) == 1  # logged once, not at every poll
        # the next good set replaces it
        save_artifacts(with_i7(contract), artifacts_dir)
        assert check(client) is True and "i7" in ids(client)
        assert client.get("/readyz").json()["artifacts"]["reload_error"] is None


def test_a_set_rewritten_under_the_reader_is_refused(artifacts_dir: Path, contract: FeatureContract) -> None:
    old_items = (artifacts_dir / ITEMS_FILE).read_bytes()
    save_artifacts(with_i7(contract), artifacts_dir)
    (artifacts_dir / ITEMS_FILE).write_bytes(old_items)  # valid JSON, from the other set
    with pytest.raises(ArtifactError, match=r"items.json do not match the manifest's sizes and sha256"):
        load_artifacts(artifacts_dir)


def test_a_set_that_does_not_fit_the_contract_keeps_the_old_one(
    artifacts_dir: Path, contract: FeatureContract
) -> None:
    with app_for(artifacts_dir) as client:
        broken = dataclasses.replace(with_i7(contract), user_features={"age": ["old", 40.0, None]})
        save_artifacts(broken, artifacts_dir)
        assert check(client) is False
        assert "i7" not in ids(client)
        assert "age" in client.get("/readyz").json()["artifacts"]["reload_error"]


def test_repointing_a_symlink_reloads(tmp_path: Path, artifacts_dir: Path, contract: FeatureContract) -> None:
    current = tmp_path / "current"
    current.symlink_to(artifacts_dir)
    v2 = tmp_path / "v2"
    save_artifacts(with_i7(contract), v2)
    contract.save(v2)
    with app_for(current) as client:
        assert "i7" not in ids(client)
        (tmp_path / "next").symlink_to(v2)
        os.replace(tmp_path / "next", current)  # the atomic switch a deploy script makes
        assert check(client) is True and "i7" in ids(client)


def test_the_lifespan_polls_the_directory(artifacts_dir: Path, contract: FeatureContract) -> None:
    with app_for(artifacts_dir, artifacts_poll_interval_s=0.05) as client:
        save_artifacts(with_i7(contract), artifacts_dir)
        deadline = time.monotonic() + 20
        while client.get("/readyz").json()["artifacts"]["reloads"] < 1:
            assert time.monotonic() < deadline, "the poll never reloaded the new set"
            time.sleep(0.02)
        assert "i7" in ids(client)


def test_artifacts_age_from_their_build_time(artifacts_dir: Path, artifacts: RecallArtifacts) -> None:
    built = time.time() - 3600
    save_artifacts(dataclasses.replace(artifacts, built_at=built), artifacts_dir)
    assert json.loads((artifacts_dir / MANIFEST).read_text())["built_at"] == built
    with app_for(artifacts_dir) as client:
        before = time.time()
        age = metric(client, "ranker_artifacts_age_seconds")
        ready = client.get("/readyz").json()["artifacts"]
        after = time.time()
    assert before - built <= age <= after - built
    assert ready["built_at"] == built and before - built - 0.001 <= ready["age_s"] <= after - built + 0.001
    assert ready["as_of"] == T


def test_a_manifest_without_built_at_dates_from_its_file(artifacts_dir: Path) -> None:
    manifest = json.loads((artifacts_dir / MANIFEST).read_text())
    del manifest["built_at"]
    (artifacts_dir / MANIFEST).write_text(json.dumps(manifest))
    os.utime(artifacts_dir / MANIFEST, (T + 5.0, T + 5.0))
    assert load_artifacts(artifacts_dir).built_at == T + 5.0

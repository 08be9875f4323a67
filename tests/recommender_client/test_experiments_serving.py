"""Experiments through /recommend against a real gRPC server (scripted TF Serving): the arm's
model_spec reaches Predict, a canary with an unknown label falls back to stable, per-arm metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recommender_client.breaker import CircuitBreaker
from recommender_client.client import GrpcClient
from recommender_client.experiment_scoring import ExperimentArms
from recommender_client.experiments import load_experiments
from recommender_client.jsonl_log import log_files, read_records
from recommender_client.pipeline import RankRequest
from recommender_client.ranking import LocalScorer, ServingScorer
from recommender_client.recommender import RecallConfig, Recommender
from recommender_client.service.app import create_app
from tests.recommender_client.conftest import T
from tests.recommender_client.scripted_tfs import Script, scripted_server
from tests.recommender_client.test_experiments import by_hand
from tests.recommender_client.test_pipeline import QUOTAS
from tests.recommender_client.test_scoring_deadlines import app_settings

SALT = "ab-1"


def experiments_file(tmp_path: Path, canary: dict) -> Path:
    """50/50: ``stable`` (label ``stable``) first, ``canary`` second; stable is the fallback."""
    arms = [
        {"name": "stable", "share": 0.5, "version_label": "stable"},
        {"name": "canary", "share": 0.5, **canary},
    ]
    path = tmp_path / "experiments.yaml"
    path.write_text(
        yaml.safe_dump({"active": "ab", "experiments": [{"name": "ab", "salt": SALT, "arms": arms}]})
    )
    return path


def users(arm: int, n: int) -> list[str]:
    """The first ``n`` user ids of arm 0 (stable) or 1 (canary), by the independent hash."""
    found = [f"user-{k}" for k in range(200) if by_hand(f"user-{k}", SALT, [0.5, 0.5]) == arm]
    assert len(found) >= n
    return found[:n]


def samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = client.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted((k, v) for k, v in s.labels.items() if k != "experiment"))] = s.value
    return out


def test_each_arm_sends_its_model_spec(artifacts_dir: Path, tmp_path: Path) -> None:
    """Stable asks for the label, canary for version 2; each answer names the version that scored."""
    script = Script(labels={"stable": 1}, versions=frozenset({1, 2}))
    with scripted_server(script) as (script, port):
        path = experiments_file(tmp_path, {"version": 2})
        settings = app_settings(artifacts_dir, port, experiments_path=path)
        with TestClient(create_app(settings)) as client:
            script.specs.clear()  # the model check's start-up calls are not Predicts, but be sure
            s_body = client.post("/recommend", json={"user_id": users(0, 1)[0], "k": 3}).json()
            stable_specs = list(script.specs)
            c_body = client.post("/recommend", json={"user_id": users(1, 1)[0], "k": 3}).json()
            canary_specs = script.specs[len(stable_specs) :]
    assert stable_specs == [("ctr", None, "stable")] and canary_specs == [("ctr", 2, None)]
    assert (s_body["experiment"], s_body["arm"], s_body["served_arm"], s_body["model_version"]) == (
        "ab",
        "stable",
        "stable",
        1,
    )
    assert (c_body["arm"], c_body["served_arm"], c_body["model_version"], c_body["degraded"]) == (
        "canary",
        "canary",
        2,
        False,
    )


def test_an_unknown_canary_label_falls_back_to_stable(artifacts_dir: Path, tmp_path: Path) -> None:
    """The server knows no ``canary`` label (NOT_FOUND): its users are served by stable, the
    response and the served log say so; after 2 failures (the threshold) the canary's breaker
    opens and its users go straight to stable. Metrics are counted by hand."""
    script = Script(labels={"stable": 1})
    log_path = tmp_path / "served.jsonl"
    with scripted_server(script) as (script, port):
        path = experiments_file(tmp_path, {"version_label": "canary"})
        settings = app_settings(artifacts_dir, port, experiments_path=path, served_log_path=log_path)
        canary, stable = users(1, 3), users(0, 2)
        with TestClient(create_app(settings)) as client:
            bodies = [client.post("/recommend", json={"user_id": u, "k": 3}).json() for u in canary + stable]
            requests = samples(client, "ranker_arm_requests_total")
            errors = samples(client, "ranker_arm_errors_total")
            degraded = samples(client, "ranker_arm_degraded_total")
            seconds = samples(client, "ranker_arm_request_seconds_count")
            ready = client.get("/readyz").json()
        predicts = list(script.specs)
    # the canary's own breaker is open; stable's (the service's, /readyz's "breaker") is not
    assert ready["experiment"] == {
        "name": "ab",
        "stable": "stable",
        "arms": {
            "stable": {
                "share": 0.5,
                "model_name": None,
                "version": None,
                "version_label": "stable",
                "breaker": "closed",
            },
            "canary": {
                "share": 0.5,
                "model_name": None,
                "version": None,
                "version_label": "canary",
                "breaker": "open",
            },
        },
    }
    assert ready["breaker"] == "closed"
    assert [(b["arm"], b["served_arm"], b["degraded"], b["model_version"]) for b in bodies] == [
        ("canary", "stable", False, 1)
    ] * 3 + [("stable", "stable", False, 1)] * 2
    # canary tried twice (NOT_FOUND each time, then the breaker is open), stable five times
    assert predicts == [("ctr", None, "canary"), ("ctr", None, "stable")] * 2 + [("ctr", None, "stable")] * 3
    assert requests == {
        (("arm", "canary"), ("served_arm", "stable")): 3.0,
        (("arm", "stable"), ("served_arm", "stable")): 2.0,
    }
    assert errors == {
        (("arm", "canary"), ("reason", "model_not_found")): 2.0,
        (("arm", "canary"), ("reason", "circuit_open")): 1.0,
    }
    assert degraded == {}
    assert seconds == {(("arm", "canary"),): 3.0, (("arm", "stable"),): 2.0}
    records = list(read_records(log_files(log_path)))
    assert [(r["experiment"], r["arm"], r["served_arm"], r["model_version"]) for r in records] == [
        ("ab", "canary", "stable", 1)
    ] * 3 + [("ab", "stable", "stable", 1)] * 2
    assert [r["user_id"] for r in records] == canary + stable


def test_a_stable_arm_that_fails_degrades_and_is_counted(artifacts_dir: Path, tmp_path: Path) -> None:
    """UNAVAILABLE everywhere: the canary's users try canary then stable, then the recall order;
    stable's users try stable once. Each arm's failures and degraded answers are its own."""
    with scripted_server(Script(abort="UNAVAILABLE")) as (script, port):
        path = experiments_file(tmp_path, {"version": 3})
        settings = app_settings(artifacts_dir, port, experiments_path=path, breaker_failure_threshold=10)
        with TestClient(create_app(settings)) as client:
            bodies = [
                client.post("/recommend", json={"user_id": u, "k": 3}).json()
                for u in users(1, 1) + users(0, 1)
            ]
            requests = samples(client, "ranker_arm_requests_total")
            errors = samples(client, "ranker_arm_errors_total")
            degraded = samples(client, "ranker_arm_degraded_total")
    assert [(b["arm"], b["served_arm"], b["degraded"], b["degraded_reason"]) for b in bodies] == [
        ("canary", None, True, "unavailable"),
        ("stable", None, True, "unavailable"),
    ]
    assert requests == {
        (("arm", "canary"), ("served_arm", "none")): 1.0,
        (("arm", "stable"), ("served_arm", "none")): 1.0,
    }
    assert errors == {
        (("arm", "canary"), ("reason", "unavailable")): 1.0,
        (("arm", "stable"), ("reason", "unavailable")): 2.0,
    }
    assert degraded == {
        (("arm", "canary"), ("reason", "unavailable")): 1.0,
        (("arm", "stable"), ("reason", "unavailable")): 1.0,
    }


def test_the_blocking_path_falls_back_too(contract, loaded, tmp_path: Path) -> None:
    """Recommender.recommend (offline runs) on a blocking gRPC client: same arms, same fallback;
    an arm selecting a model cannot run on a local scorer (it serves one model)."""
    experiment = load_experiments(experiments_file(tmp_path, {"version_label": "canary"}))
    assert experiment is not None
    with pytest.raises(
        ValueError, match="arm 'stable' selects a served model but the scorer is a LocalScorer"
    ):
        ExperimentArms(experiment, LocalScorer({}), breaker=None)
    with scripted_server(Script(labels={"stable": 1})) as (script, port):
        with GrpcClient(f"127.0.0.1:{port}", timeout=1.0, retries=0) as client:
            scorer = ServingScorer(client, model_name="ctr", timeout_s=1.0)
            breaker = CircuitBreaker(failure_threshold=5, cooldown_s=60)
            recommender = Recommender(
                contract=contract,
                artifacts=loaded,
                scorer=scorer,
                recall=RecallConfig(quotas=QUOTAS, max_candidates=10),
                breaker=breaker,
                arms=ExperimentArms(experiment, scorer, breaker=breaker, new_breaker=CircuitBreaker),
            )
            batch, _ = recommender.recommend(RankRequest(user_id=users(1, 1)[0], k=3, now=T))
    values = batch.values
    assert (values["arm"], values["served_arm"], values["degraded"], values["served_by"].version) == (
        "canary",
        "stable",
        False,
        1,
    )
    assert values["arm_errors"] == (("canary", "model_not_found"),)
    assert script.specs == [("ctr", None, "canary"), ("ctr", None, "stable")]

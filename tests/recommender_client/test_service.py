"""The HTTP service: /recommend, errors, cold start, readiness, metrics, hot reload, settings, CLI."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from recommender_client.ranking import LocalScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.conftest import T

REPO = Path(__file__).resolve().parents[2]
RULES = "rules:\n  - {name: boost-b, type: boost, multiplier: 1.2, categories: [b]}\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_for(artifacts_dir: Path, **overrides) -> Settings:
    base = {
        "artifacts_dir": artifacts_dir,
        "fixed_now": T,
        "max_k": 20,
        "quota_itemcf": 2,
        "quota_category_popularity": 2,
        "quota_new": 1,
        "quota_popularity": 10,
        "max_candidates": 10,
    }
    return Settings(**(base | overrides))


@pytest.fixture()
def local_client(artifacts_dir: Path, tmp_path: Path):
    (tmp_path / "rules.yaml").write_text(RULES)
    settings = settings_for(artifacts_dir, rules_path=tmp_path / "rules.yaml", rules_reload_interval_s=0)
    scorer = LocalScorer(load_artifacts(artifacts_dir).popularity_of(), intercept=0.0, slope=1.0)
    with TestClient(create_app(settings, scorer=scorer)) as client:
        yield client


def test_recommend_returns_ranked_items_with_explanations(local_client: TestClient) -> None:
    response = local_client.post("/recommend", json={"user_id": "u2", "k": 3, "context": {"device": "ios"}})
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is False and body["cold_start"] is False and body["candidates"] == 5
    # model order i2 .75, i3 2/3, i6 2/3; boost-b lifts i3 to .8
    assert [i["item_id"] for i in body["items"]] == ["i3", "i2", "i6"]
    first = body["items"][0]
    assert first["position"] == 0 and first["pre_rerank_position"] == 1 and first["rules"] == ["boost-b"]
    assert first["recall_source"] == "itemcf"
    assert first["score"] == pytest.approx(2 / 3, rel=1e-6) and first["rank_score"] == pytest.approx(
        0.8, rel=1e-6
    )
    assert body["items"][1]["rules"] == [] and body["items"][1]["pre_rerank_position"] == 0


def test_invalid_bodies_and_k_range(local_client: TestClient) -> None:
    response = local_client.post("/recommend", json={"k": 3})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "user_id"]
    response = local_client.post("/recommend", json={"user_id": "u1", "k": "ten"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "k"]
    response = local_client.post("/recommend", json={"user_id": "u1", "surprise": 1})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "surprise"]
    for k in (0, 21):
        response = local_client.post("/recommend", json={"user_id": "u1", "k": k})
        assert response.status_code == 400
        assert response.json()["detail"] == f"k must be between 1 and 20, got {k}"
    response = local_client.post("/recommend", json={"user_id": "u1", "context": {"hour": "noon"}})
    assert response.status_code == 400
    assert "context['hour']: feature 'hour' takes an int64, got 'noon'" in response.json()["detail"]


def test_unknown_user_takes_cold_start_and_candidates_are_ranked(local_client: TestClient) -> None:
    body = local_client.post("/recommend", json={"user_id": 12345, "k": 10}).json()
    assert body["user_id"] == "12345" and body["cold_start"] is True and body["degraded"] is False
    assert {i["recall_source"] for i in body["items"]} == {"popularity", "new"}
    body = local_client.post(
        "/recommend", json={"user_id": "u1", "k": 2, "candidates": ["i5", "i2", "nope"]}
    ).json()
    assert [i["item_id"] for i in body["items"]] == ["i2", "i5"]
    assert local_client.post("/recommend", json={"user_id": "u1", "candidates": []}).status_code == 400


def test_health_readiness_and_metrics(local_client: TestClient) -> None:
    assert local_client.get("/healthz").json() == {"status": "ok"}
    ready = local_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["state"] == "AVAILABLE"
    local_client.post("/recommend", json={"user_id": "u2", "k": 3})
    local_client.post("/recommend", json={"user_id": "u2", "k": 0})
    text = local_client.get("/metrics").text
    assert 'ranker_stage_seconds_count{stage="ScoreCandidates"} 1.0' in text
    assert 'ranker_stage_seconds_count{stage="RecallCandidates"} 1.0' in text
    assert 'ranker_requests_total{status="200"} 1.0' in text
    assert 'ranker_requests_total{status="400"} 1.0' in text
    assert 'ranker_request_seconds_count{degraded="false"} 1.0' in text


def test_rules_hot_reload_without_restart(local_client: TestClient, tmp_path: Path) -> None:
    before = local_client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES + "  - {name: ban-i3, type: blacklist, items: [i3]}\n")
    os.utime(rules, ns=(time.time_ns() + 10**9,) * 2)
    after = local_client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    assert [i["item_id"] for i in before["items"]] == ["i3", "i2"]
    assert [i["item_id"] for i in after["items"]] == ["i2", "i6"] and after["rules_version"] != before[
        "rules_version"
    ]
    rules.write_text("rules: [{name: broken, type: boost}]\n")
    os.utime(rules, ns=(time.time_ns() + 2 * 10**9,) * 2)
    kept = local_client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    assert kept["rules_version"] == after["rules_version"]
    assert "ranker_rules_reload_failures 1.0" in local_client.get("/metrics").text


def test_rules_reload_failures_never_fail_a_request(local_client: TestClient, tmp_path: Path) -> None:
    """Bytes that are not UTF-8, deep nesting and an empty file: each a counted failed reload, no 500."""
    rules = tmp_path / "rules.yaml"
    before = local_client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    edits = [b"rules: [{name: caf\xe9, type: filter_unpublished}]", b"rules: " + b"[" * 2000, b""]
    for n, edit in enumerate(edits, start=1):
        rules.write_bytes(edit)
        os.utime(rules, ns=(time.time_ns() + n * 10**9,) * 2)
        response = local_client.post("/recommend", json={"user_id": "u2", "k": 2})
        assert response.status_code == 200 and response.json()["rules_version"] == before["rules_version"]
        assert f"ranker_rules_reload_failures {n}.0" in local_client.get("/metrics").text
    assert [i["item_id"] for i in response.json()["items"]] == ["i3", "i2"]  # boost-b still applies


def test_model_server_down_degrades_and_stays_ready(artifacts_dir: Path) -> None:
    settings = settings_for(
        artifacts_dir,
        protocol="rest",
        rest_url=f"http://127.0.0.1:{free_port()}",
        breaker_failure_threshold=1,
        breaker_cooldown_s=60,
    )
    with TestClient(create_app(settings)) as client:
        body = client.post("/recommend", json={"user_id": "u2", "k": 3}).json()
        assert body["degraded"] is True and body["degraded_reason"] == "unavailable"
        assert [i["item_id"] for i in body["items"]] == ["i3", "i2", "i5"]  # recall order
        assert all(i["score"] is None for i in body["items"])
        body = client.post("/recommend", json={"user_id": "u2", "k": 3}).json()
        assert body["degraded_reason"] == "circuit_open"
        ready = client.get("/readyz")  # still ready: the fallback answers (issue 18 item 3)
        assert ready.status_code == 200 and ready.json()["state"] == "UNAVAILABLE"
        assert ready.json()["degraded"] is True and ready.json()["breaker"] == "open"
        assert "ranker_model_available 0.0" in client.get("/metrics").text
        text = client.get("/metrics").text
        assert 'ranker_fallbacks_total{reason="unavailable"} 1.0' in text
        assert 'ranker_fallbacks_total{reason="circuit_open"} 1.0' in text
        assert "ranker_breaker_open 1.0" in text


def test_settings_from_env_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "ranker.env"
    env_file.write_text(f"RANKER_ARTIFACTS_DIR={tmp_path}\nRANKER_MODEL_NAME=from_file\nRANKER_MAX_K=7\n")
    monkeypatch.setenv("RANKER_MAX_K", "9")
    settings = Settings(_env_file=env_file)
    assert settings.model_name == "from_file" and settings.max_k == 9  # env beats the file
    assert settings.contract_path == tmp_path / "feature_contract.json"
    monkeypatch.setenv("RANKER_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ValueError, match="protocol"):
        Settings(_env_file=env_file)


NO_TF_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from recommender_client.service.app import create_app
    from recommender_client.service.settings import Settings
    settings = Settings(artifacts_dir=sys.argv[1], grpc_target=sys.argv[2], predict_timeout_s=0.2)
    with TestClient(create_app(settings)) as client:
        body = client.post("/recommend", json={"user_id": "u2", "k": 3}).json()
    print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "degraded": body["degraded"],
                      "reason": body["degraded_reason"], "grpc": "grpc" in sys.modules}))
    """
)


def test_service_never_imports_tensorflow(artifacts_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", NO_TF_SCRIPT, str(artifacts_dir), f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"tensorflow": False, "degraded": True, "reason": "unavailable", "grpc": True}


@contextlib.contextmanager
def running_ranker(artifacts_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m recommender_client.service`` on a free port, polled until it answers, then stopped.

    No model server listens at its gRPC target, so its answers are degraded (recall order).
    """
    port = free_port()
    argv = [
        "--port",
        str(port),
        "--artifacts-dir",
        str(artifacts_dir),
        "--grpc-target",
        f"127.0.0.1:{free_port()}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommender_client.service", *argv, "--log-level", "warning"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_cli_serves_over_http(artifacts_dir: Path, tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "recommender_client.service", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--artifacts-dir" in help_text and "RANKER_" in help_text
    with running_ranker(artifacts_dir) as (base, _):
        body = httpx.post(f"{base}/recommend", json={"user_id": "u1", "k": 2}, timeout=5).json()
        assert body["degraded"] is True and len(body["items"]) == 2
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["degraded"] is True  # the fallback serves
    bad = subprocess.run(
        [sys.executable, "-m", "recommender_client.service"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RANKER_MAX_K": "0"},
    )
    assert bad.returncode == 2 and "artifacts_dir" in bad.stderr

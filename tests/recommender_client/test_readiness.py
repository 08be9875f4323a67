"""/readyz is about the ranker; the model's health and signature check are fields and metrics
(issue 18 item 3), against a scripted real gRPC model server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi.testclient import TestClient

from recommender_client.client.grpc_aio_client import AsyncGrpcClient
from recommender_client.client.metadata import ModelMetadata, SignatureSpec, TensorSpec
from recommender_client.model_check import ModelWatch, signature_problems
from recommender_client.ranking import ServedBy
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.conftest import T, tiny_contract
from tests.recommender_client.scripted_tfs import Script, scripted_server
from tests.recommender_client.test_service import free_port

CONTRACT = tiny_contract().signature_spec()


def settings_for(artifacts_dir: Path, target: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "artifacts_dir": artifacts_dir,
        "fixed_now": T,
        "grpc_target": target,
        "quota_itemcf": 2,
        "quota_category_popularity": 2,
        "quota_new": 1,
        "quota_popularity": 10,
        "max_candidates": 10,
        "model_poll_interval_s": 60,  # only start-up and Predict answers trigger checks here
        "status_timeout_s": 0.5,
    }
    return Settings(**(base | overrides))


def until(predicate, seconds: float = 10.0) -> bool:
    """Poll ``predicate`` until true (a wait, not a timing assertion)."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_ready_while_tf_serving_is_down(artifacts_dir: Path) -> None:
    """Today's /readyz was 503 here, so an orchestrator dropped the replica the fallback serves from."""
    with TestClient(create_app(settings_for(artifacts_dir, f"127.0.0.1:{free_port()}"))) as client:
        body = client.post("/recommend", json={"user_id": "u2", "k": 3}).json()
        ready = client.get("/readyz")
        metrics = client.get("/metrics").text
    assert body["degraded"] is True and len(body["items"]) == 3
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["state"] == "UNAVAILABLE"
    assert ready.json()["degraded"] is True and ready.json()["contract"] == "unknown"
    assert "ranker_model_available 0.0" in metrics and "ranker_model_version -1.0" in metrics


def test_a_fitting_model_is_checked_at_start_up(artifacts_dir: Path) -> None:
    with scripted_server(Script(version=7, signature=CONTRACT)) as (script, port):
        with TestClient(create_app(settings_for(artifacts_dir, f"127.0.0.1:{port}"))) as client:
            ready = client.get("/readyz").json()
            metrics = client.get("/metrics").text
    assert (ready["state"], ready["model_version"], ready["contract"], ready["contract_version"]) == (
        "AVAILABLE",
        7,
        "ok",
        7,
    )
    assert ready["degraded"] is False and ready["problems"] == []
    assert script.calls["GetModelMetadata"] == 1
    assert "ranker_model_available 1.0" in metrics and "ranker_model_version 7.0" in metrics
    assert 'ranker_model_checks_total{result="ok"} 1.0' in metrics
    assert "ranker_model_contract_mismatch 0.0" in metrics


def test_a_mismatch_is_reported_at_start_up_not_discovered_as_fallbacks(artifacts_dir: Path) -> None:
    """age served as int64 and no hour input: /readyz names both before any request."""
    served = {k: v for k, v in CONTRACT.items() if k != "hour"} | {"age": "int64"}
    with scripted_server(Script(signature=served)) as (script, port):
        with TestClient(create_app(settings_for(artifacts_dir, f"127.0.0.1:{port}"))) as client:
            ready = client.get("/readyz")
            metrics = client.get("/metrics").text
    assert ready.status_code == 200 and script.calls["Predict"] == 0
    assert ready.json()["contract"] == "mismatch" and ready.json()["degraded"] is True
    assert ready.json()["problems"] == [
        "inputs the contract sends but the model lacks: ['hour']",
        "input 'age' is int64 in the model, float32 in the contract",
    ]
    assert "ranker_model_contract_mismatch 1.0" in metrics
    assert 'ranker_model_checks_total{result="mismatch"} 1.0' in metrics


def test_a_new_version_in_a_predict_answer_is_checked_at_once(artifacts_dir: Path) -> None:
    """Version 2 (whose output is renamed) appears in a Predict answer: checked without waiting
    for the 60 s poll."""
    with scripted_server(Script(version=1, signature=CONTRACT)) as (script, port):
        with TestClient(create_app(settings_for(artifacts_dir, f"127.0.0.1:{port}"))) as client:
            assert client.get("/readyz").json()["contract"] == "ok"
            script.version, script.output = 2, ("ctr", "string")
            client.post("/recommend", json={"user_id": "u2", "k": 3})
            assert until(lambda: client.get("/readyz").json()["contract_version"] == 2)
            ready = client.get("/readyz").json()
    assert ready["contract"] == "mismatch" and ready["problems"] == ["output 'ctr' is string, not a float"]
    assert script.calls["GetModelMetadata"] == 2


def watch_on(client: AsyncGrpcClient, *, inputs: dict[str, str], min_gap_s: float = 0.5) -> ModelWatch:
    return ModelWatch(
        client,
        model_name="m",
        signature_name="serving_default",
        output="ctr",
        inputs=inputs,
        min_gap_s=min_gap_s,
    )


def test_the_poll_sees_a_version_change() -> None:
    """GetModelStatus reporting a new version triggers the metadata check (REST answers carry no
    version, so this is how a REST ranker learns it)."""
    with scripted_server(Script(version=3, signature={"x": "float32"})) as (script, port):

        async def main() -> tuple[str, int | None, str, int | None]:
            client = AsyncGrpcClient(f"127.0.0.1:{port}", timeout=2.0)
            watch = watch_on(client, inputs={"x": "float32"})
            try:
                first = await watch.refresh()
                script.version, script.signature = 4, {"x": "string"}
                second = await watch.refresh()
                return first.contract, first.checked_version, second.contract, second.checked_version
            finally:
                await client.close()

        assert asyncio.run(main()) == ("ok", 3, "mismatch", 4)
    assert script.calls["GetModelMetadata"] == 2


def test_signature_problems_by_hand() -> None:
    def spec(**dtypes: str) -> dict[str, TensorSpec]:
        return {n: TensorSpec(d, (None,)) for n, d in dtypes.items()}

    meta = ModelMetadata(
        "m", 1, {"serving_default": SignatureSpec(spec(a="string", c="int64"), spec(p="float64"), "predict")}
    )
    assert (
        signature_problems(meta, {"a": "string", "c": "int64"}, signature_name="serving_default", output="p")
        == []
    )
    assert signature_problems(
        meta, {"a": "int64", "b": "float32"}, signature_name="serving_default", output="q"
    ) == [
        "inputs the contract sends but the model lacks: ['b']",
        "inputs the model needs but the contract does not send: ['c']",
        "input 'a' is string in the model, int64 in the contract",
        "no output 'q' (has ['p'])",
    ]
    assert signature_problems(meta, {}, signature_name="other", output="p") == [
        "no signature 'other' (has ['serving_default'])"
    ]


def test_a_failing_metadata_call_is_not_retried_per_predict_answer() -> None:
    """While GetModelMetadata fails, every Predict answer names an unchecked version; the watch
    still checks at most once per min_gap_s (0.5 s), not once per answer."""
    with scripted_server(Script(version=5, metadata_abort="INTERNAL")) as (script, port):

        async def main() -> str:
            client = AsyncGrpcClient(f"127.0.0.1:{port}", timeout=2.0)
            watch = watch_on(client, inputs={}, min_gap_s=0.5)
            try:
                await watch.start()
                for _ in range(100):  # 100 Predict answers over ~0.2 s
                    watch.observe(ServedBy("m", 5))
                    await asyncio.sleep(0.002)
                return watch.report.contract
            finally:
                await watch.stop()
                await client.close()

        assert asyncio.run(main()) == "unknown"
    assert 2 <= script.calls["GetModelMetadata"] <= 3

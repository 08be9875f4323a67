"""The whole chain on tiny data: train -> export -> embedded model server -> ranking service.

Checks that /recommend's scores equal the Keras model's on the same joined rows (an independent
route: rows built here from the entity tables with pandas), that chunked Predict calls give the
same scores as one call, and that stopping the model server under requests degrades the answers
(circuit breaker opens) and restarting it recovers them without restarting the service.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

keras = pytest.importorskip("keras")

from export.saved_model import export_saved_model  # noqa: E402
from recommender_client.recall.build import build_from_data_dir  # noqa: E402
from recommender_client.service.app import create_app  # noqa: E402
from recommender_client.service.settings import Settings  # noqa: E402
from serving.model_server.config import ServerOptions  # noqa: E402
from serving.model_server.server import ModelServer  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data.synthetic import load_synthetic, write_synthetic  # noqa: E402
from training.data.synthetic_world import SyntheticConfig  # noqa: E402
from training.train import train  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONTEXT = {"hour": 20, "device": "mobile", "position": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("stack")
    data_dir = write_synthetic(
        root / "data", SyntheticConfig(num_rows=6000, seed=5, num_users=150, num_items=400)
    )
    splits = load_synthetic(data_dir)
    run = root / "run"
    train(
        TrainConfig(
            out_dir=str(run),
            model="deepfm",
            model_config={"embedding_dim": 4, "hidden_units": [16]},
            epochs=1,
            batch_size=256,
            seed=2,
            verbose=0,
        ),
        splits=splits,
    )
    model = keras.saving.load_model(run / "model.keras")
    # warmup records make the server trace the signature before it reports AVAILABLE
    export_saved_model(model, splits.contract, root / "models", "ctr", 1, warmup_frame=splits.valid.head(64))
    build_from_data_dir(data_dir, splits.contract, root / "recall")
    return {"root": root, "data": data_dir, "model": model, "contract": splits.contract}


def _start_server(stack: dict, port: int = 0, rest_port: int = 0) -> ModelServer:
    options = ServerOptions(
        port=port,
        rest_api_port=rest_port,
        bind_address="127.0.0.1",
        model_name="ctr",
        model_base_path=str(stack["root"] / "models" / "ctr"),
    )
    return ModelServer(options, enable_rest=True).start()


def _settings(stack: dict, server: ModelServer, **overrides) -> Settings:
    values = {
        "artifacts_dir": stack["root"] / "recall",
        "protocol": "grpc",
        "grpc_target": f"127.0.0.1:{server.grpc_port}",
        "rest_url": f"http://127.0.0.1:{server.rest_port}",
        "predict_timeout_s": 2.0,
        "request_deadline_s": 3.0,
        "breaker_failure_threshold": 2,
        "breaker_cooldown_s": 0.5,
    }
    return Settings(**(values | overrides))


def _offline_scores(stack: dict, user_id: str, item_ids: list[str]) -> np.ndarray:
    """Join the rows with pandas from the generator's entity tables and score them with Keras."""
    users = pd.read_parquet(stack["data"] / "users.parquet").set_index("user_id")
    items = pd.read_parquet(stack["data"] / "items.parquet").set_index("item_id")
    rows = items.loc[item_ids].reset_index()
    user = users.loc[user_id]
    columns = {}
    for feature in stack["contract"].features:
        if feature.name in rows.columns:
            values = rows[feature.name].to_numpy()
        elif feature.name == "user_id":
            values = np.full(len(rows), user_id)
        elif feature.name in users.columns:
            values = np.full(len(rows), user[feature.name])
        else:
            values = np.full(len(rows), CONTEXT[feature.name])
        dtype = {"string": object, "int64": np.int64, "float32": np.float32}[feature.dtype]
        columns[feature.name] = np.asarray(values).astype(dtype)
    return np.asarray(stack["model"].predict(columns, verbose=0)).reshape(-1)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_recommend_scores_equal_offline_keras_scores(stack: dict, protocol: str) -> None:
    server = _start_server(stack)
    try:
        items = pd.read_parquet(stack["data"] / "items.parquet")["item_id"].tolist()[:300]
        user = pd.read_parquet(stack["data"] / "users.parquet")["user_id"].iloc[3]
        expected = dict(zip(items, _offline_scores(stack, user, items), strict=True))
        answers = {}
        for chunk in (64, 1000):  # 300 candidates in 5 Predict calls, then in one
            settings = _settings(stack, server, protocol=protocol, predict_chunk_size=chunk, max_k=300)
            with TestClient(create_app(settings)) as client:
                body = {"user_id": user, "k": 300, "context": CONTEXT, "candidates": items}
                response = client.post("/recommend", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["degraded"] is False
            answers[chunk] = {i["item_id"]: i["score"] for i in answer["items"]}
        assert answers[64] == answers[1000]
        got = answers[1000]
        assert len(got) == 300
        diff = max(abs(got[item] - expected[item]) for item in got)
        assert diff <= 1e-6
        assert np.std(list(got.values())) > 1e-3  # distinct scores, so the comparison means something
    finally:
        server.stop()


def _until_not_degraded(client: TestClient, body: dict, timeout_s: float = 30.0) -> dict:
    """Poll /recommend until the model answers (a loaded machine may time out a first call)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.post("/recommend", json=body).json()
        if not answer["degraded"]:
            return answer
        assert time.monotonic() < deadline, f"still degraded: {answer['degraded_reason']}"
        time.sleep(0.3)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_model_server_down_degrades_then_recovers(stack: dict, protocol: str) -> None:
    server = _start_server(stack)
    grpc_port, rest_port = server.grpc_port, server.rest_port
    settings = _settings(stack, server, protocol=protocol, predict_timeout_s=0.5, request_deadline_s=1.0)
    user = pd.read_parquet(stack["data"] / "users.parquet")["user_id"].iloc[0]
    body = {"user_id": user, "k": 10, "context": CONTEXT}
    with TestClient(create_app(settings)) as client:
        first = _until_not_degraded(client, body)
        ready = client.get("/readyz").json()
        assert ready["state"] == "AVAILABLE" and ready["contract"] == "ok" and ready["model_version"] == 1

        server.stop()
        reasons = []
        for _ in range(4):
            started = time.monotonic()
            answer = client.post("/recommend", json=body)
            took = time.monotonic() - started
            assert answer.status_code == 200
            assert answer.json()["degraded"] is True
            assert len(answer.json()["items"]) == 10  # recall order still gives k items
            assert took < settings.request_deadline_s + 0.5
            reasons.append(answer.json()["degraded_reason"])
        assert "circuit_open" in reasons  # after 2 failures the breaker stops calling
        ready = client.get("/readyz")  # ready all the same: the fallback answers
        assert ready.status_code == 200 and ready.json()["degraded"] is True
        metrics = client.get("/metrics").text
        assert "fallback" in metrics

        server = _start_server(stack, port=grpc_port, rest_port=rest_port)
        try:
            answer = _until_not_degraded(client, body)
            assert [i["item_id"] for i in answer["items"]] == [i["item_id"] for i in first["items"]]
        finally:
            server.stop()


def _server_with_batching(stack: dict, params_file: Path) -> ModelServer:
    options = ServerOptions(
        port=0,
        rest_api_port=0,
        bind_address="127.0.0.1",
        model_name="ctr",
        model_base_path=str(stack["root"] / "models" / "ctr"),
        enable_batching=True,
        batching_parameters_file=str(params_file),
    )
    return ModelServer(options, enable_rest=True).start()


def test_the_shipped_batching_config_accepts_the_rankers_predicts(stack: dict, tmp_path: Path) -> None:
    """docker/config/batching.config (what both images serve with) against the ranker's own
    Predicts, here 400 candidates in one call; the config shipped before (max_batch_size 128,
    no splitting) is refused by the server exactly as TF Serving refuses it, so the ranker
    degrades, and a ranker told that limit refuses to start."""
    from serving.model_server.config import read_batching_parameters

    shipped = REPO / "docker" / "config" / "batching.config"
    limit = read_batching_parameters(shipped).max_batch_size.value
    items = pd.read_parquet(stack["data"] / "items.parquet")["item_id"].tolist()
    user = pd.read_parquet(stack["data"] / "users.parquet")["user_id"].iloc[1]
    body = {"user_id": user, "k": 10, "context": CONTEXT, "candidates": items}
    assert len(items) == 400

    server = _server_with_batching(stack, shipped)
    try:
        settings = _settings(stack, server, serving_max_batch_size=limit)
        fields = Settings.model_fields  # the ranker's defaults
        assert settings.largest_predict_rows == min(
            fields["predict_chunk_size"].default, fields["max_candidates"].default
        )
        with TestClient(create_app(settings)) as client:
            answer = _until_not_degraded(client, body)
        assert len(answer["items"]) == 10
    finally:
        server.stop()

    old = tmp_path / "batching.config"
    old.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 2000 }\n")
    server = _server_with_batching(stack, old)
    try:
        with TestClient(create_app(_settings(stack, server))) as client:
            answer = client.post("/recommend", json=body).json()
        assert answer["degraded"] is True
        with pytest.raises(ValueError, match="serving_max_batch_size=128"):
            _settings(stack, server, serving_max_batch_size=128)
    finally:
        server.stop()

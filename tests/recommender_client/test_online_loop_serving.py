"""The online loop against the real embedded model server: model name/version and the served features.

A seeded DeepFM over the tiny contract is exported as version 7 and served by
``serving.model_server``; /recommend goes through the service's own gRPC client. The answer's
model and version must be what the server reports (GetModelStatus), and the served log's
features must be the Predict rows: re-scored by the Keras model (an independent route), they
give the scores the server returned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommender_client.client import GrpcClient
from recommender_client.jsonl_log import log_files, read_records
from recommender_client.service.app import create_app
from recommender_client.service.settings import Settings
from tests.recommender_client.conftest import T, tiny_contract

tf = pytest.importorskip("tensorflow")
models = pytest.importorskip("training.models")
saved_model = pytest.importorskip("export.saved_model")
server_module = pytest.importorskip("serving.model_server.server")
config_module = pytest.importorskip("serving.model_server.config")

pytestmark = pytest.mark.slow
VERSION = 7


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    contract = tiny_contract()
    model = models.build_model(
        "deepfm", contract, config=models.ModelConfig(embedding_dim=4, hidden_units=(8,)), seed=3
    )
    base = tmp_path_factory.mktemp("models")
    saved_model.export_saved_model(model, contract, base, "ctr", VERSION)
    options = config_module.ServerOptions(
        port=0,
        rest_api_port=0,
        bind_address="127.0.0.1",
        model_name="ctr",
        model_base_path=str(base / "ctr"),
        file_system_poll_wait_seconds=0,
    )
    with server_module.ModelServer(options, enable_rest=True) as server:
        yield model, server


def test_model_version_and_served_features_are_the_predicts(
    served, artifacts_dir: Path, tmp_path: Path
) -> None:
    model, server = served
    settings = Settings(
        artifacts_dir=artifacts_dir,
        fixed_now=T,
        protocol="grpc",
        grpc_target=f"127.0.0.1:{server.grpc_port}",
        predict_timeout_s=10.0,
        request_deadline_s=20.0,
        quota_itemcf=2,
        quota_category_popularity=2,
        quota_new=1,
        quota_popularity=10,
        max_candidates=10,
        served_log_path=tmp_path / "served.jsonl",
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/recommend", json={"user_id": "u2", "k": 3, "context": {"device": "ios"}})
    body = response.json()
    assert response.status_code == 200 and body["degraded"] is False
    with GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=10.0) as grpc_client:
        (status,) = grpc_client.model_status("ctr")
    assert (body["model"], body["model_version"]) == ("ctr", status.version) == ("ctr", VERSION)
    assert response.headers["x-request-id"] == body["request_id"]

    (record,) = read_records(log_files(tmp_path / "served.jsonl"))
    assert record["request_id"] == body["request_id"] and record["model_version"] == VERSION
    assert record["items"] == [i["item_id"] for i in body["items"]]
    features = record["features"]
    assert (
        features["device"] == ["ios"] * 3 and features["age"] == [40.0] * 3 and features["hour"] == [22] * 3
    )
    columns = {
        f.name: tf.constant(
            features[f.name], dtype={"string": tf.string, "int64": tf.int64}.get(f.dtype, tf.float32)
        )
        for f in tiny_contract().features
    }
    rescored = np.asarray(model(columns)).reshape(-1)
    np.testing.assert_allclose(rescored, record["scores"], atol=1e-6)
    np.testing.assert_allclose([i["score"] for i in body["items"]], record["scores"], atol=1e-7)

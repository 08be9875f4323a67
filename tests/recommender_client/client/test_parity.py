"""Acceptance parity: 1,000 rows scored by Keras offline and by both clients via the model server.

A seeded DeepFM over a contract with every feature kind (with large embeddings so scores spread
over (0, 1)) is exported as TF Serving loads it, served by the embedded model server, and scored
through ``build_request_columns`` + GrpcClient / RestClient. Rows include missing values, unseen
vocabulary entries and multi-valued lists, so routing or encoding mistakes would show.
"""

from __future__ import annotations

import numpy as np
import pytest

from recommender_client.client import GrpcClient, RestClient, build_request_columns, validate_outputs
from training.features import Feature, FeatureContract

tf = pytest.importorskip("tensorflow")
models = pytest.importorskip("training.models")
saved_model = pytest.importorskip("export.saved_model")
server_module = pytest.importorskip("serving.model_server.server")
config_module = pytest.importorskip("serving.model_server.config")

pytestmark = pytest.mark.slow
ROWS = 1000
CONTRACT = FeatureContract(
    features=(
        Feature("user_id", "categorical_string", "user", vocabulary=tuple(f"u{i}" for i in range(20))),
        Feature("user_age", "numeric", "user", mean=35.0, std=10.0),
        Feature("item_id", "categorical_int", "item", vocabulary=tuple(range(100, 130))),
        Feature("item_shop", "categorical_string", "item", hash_buckets=16),
        Feature("item_tags", "multi_categorical", "item", vocabulary=("a", "b", "c", "d"), max_len=3),
        Feature("price", "numeric", "item", mean=10.0, std=5.0),
        Feature("hour", "categorical_int", "context", hash_buckets=24),
    )
)


def make_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for i in range(ROWS):
        row = {
            "user_id": f"u{rng.integers(0, 25)}",  # u20..u24 are out of vocabulary
            "user_age": float(rng.normal(35, 12)),
            "item_id": int(rng.integers(95, 135)),
            "item_shop": f"shop{rng.integers(0, 50)}",
            "item_tags": [str(t) for t in rng.choice(list("abcdez"), size=rng.integers(0, 5))],
            "price": float(rng.gamma(2.0, 5.0)),
            "hour": int(rng.integers(0, 24)),
        }
        if i % 17 == 0:
            del row["user_age"], row["item_shop"]  # cold start: the contract's defaults
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    config = models.ModelConfig(embedding_dim=8, hidden_units=(16,), embeddings_scale=1.0)
    model = models.build_model("deepfm", CONTRACT, config=config, seed=7)
    base = tmp_path_factory.mktemp("models")
    saved_model.export_saved_model(model, CONTRACT, base, "ctr", 1)
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


def test_keras_grpc_and_rest_scores_agree(served):
    model, server = served
    columns = build_request_columns(CONTRACT, make_rows(np.random.default_rng(3)))
    offline = np.asarray(
        model({k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in columns.items()})
    )
    assert offline.shape == (ROWS,)
    assert offline.std() > 0.05  # the scores really vary, so agreement means something

    with GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=30.0) as grpc_client:
        by_grpc = validate_outputs(grpc_client.predict(columns, model_name="ctr"), num_rows=ROWS)["ctr"]
    with RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=30.0) as rest_client:
        by_rest = validate_outputs(rest_client.predict(columns, model_name="ctr"), num_rows=ROWS)["ctr"]

    assert np.max(np.abs(by_grpc - offline)) <= 1e-6
    assert np.max(np.abs(by_rest - offline)) <= 1e-6

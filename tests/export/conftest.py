"""Fixtures for the export tests: a hand-built contract, cheap rows, tiny models and one export."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.features import Feature, FeatureContract

USERS = ("alice", "bob", "carol", "dave")
ITEMS = (10, 20, 30, 40)
TAGS = ("x", "y", "z")


def entries(model_dir: Path) -> list[str]:
    """Names in a model directory, without the exporters' lock file (always there after an export)."""
    from export.layout import LOCK_FILENAME

    return sorted(p.name for p in model_dir.iterdir() if p.name != LOCK_FILENAME)


def tiny_contract() -> FeatureContract:
    """Every feature kind: string vocab, int vocab (2 OOV buckets), multi-valued, numeric, hashed."""
    return FeatureContract(
        features=(
            Feature("user", "categorical_string", "user", vocabulary=USERS, embedding_dim=4),
            Feature("item", "categorical_int", "item", vocabulary=ITEMS, num_oov=2, embedding_dim=4),
            Feature("tags", "multi_categorical", "item", vocabulary=TAGS, max_len=3, embedding_dim=4),
            Feature("price", "numeric", "item", mean=5.0, std=2.0),
            Feature("city", "categorical_string", "context", hash_buckets=16, embedding_dim=4),
        )
    )


def tiny_frame(rows: int, seed: int) -> pd.DataFrame:
    """Random rows (with some unseen values) and labels that depend on user and price, so AUC > 0.5."""
    rng = np.random.default_rng(seed)
    user = rng.choice([*USERS, "erin"], rows)
    price = rng.normal(5.0, 2.0, rows).astype(np.float32)
    logit = np.where(np.isin(user, ("alice", "bob")), 1.5, -1.5) + 0.5 * (price - 5.0)
    return pd.DataFrame(
        {
            "user": user,
            "item": rng.choice([*ITEMS, 99], rows).astype(np.int64),
            "tags": rng.choice(["x|y", "", "z", "q|x|y|z"], rows),
            "price": price,
            "city": rng.choice(["paris", "rome", "oslo"], rows),
            "label": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64),
        }
    )


def train_tiny(contract: FeatureContract, frame: pd.DataFrame, *, flip: bool = False, seed: int = 0):
    """A compiled DeepFM fit for two quick epochs (on flipped labels for a deliberately bad model)."""
    import keras
    import tensorflow as tf

    from export.batches import frame_inputs
    from training.models import ModelConfig, build_model

    model = build_model("deepfm", contract, config=ModelConfig(hidden_units=(8,)), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    labels = frame["label"].to_numpy().astype(np.float32)
    inputs = {k: tf.constant(v) for k, v in frame_inputs(frame, contract).items()}
    model.fit(inputs, 1.0 - labels if flip else labels, epochs=2, batch_size=256, verbose=0)
    return model


@pytest.fixture(scope="session")
def contract() -> FeatureContract:
    return tiny_contract()


@pytest.fixture(scope="session")
def eval_frame() -> pd.DataFrame:
    return tiny_frame(10_000, seed=1)


@pytest.fixture(scope="session")
def trained_model(contract):
    return train_tiny(contract, tiny_frame(3000, seed=0))


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_model, contract, eval_frame) -> Path:
    """One published version (1) of the trained model, with warmup from the evaluation rows."""
    from export.saved_model import export_saved_model

    base = tmp_path_factory.mktemp("exported")
    return export_saved_model(
        trained_model,
        contract,
        base,
        "ctr",
        warmup_frame=eval_frame.head(100),
        model_card={"data": {"source": "tiny"}},
    )


@pytest.fixture(scope="session")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(str(exported))


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local[2] session for the export tests (a few seconds to start), loopback only, UI off."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for Spark")
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("recsys-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()

"""Tiny hand-built contracts and batches for the model-zoo tests."""

from __future__ import annotations

import numpy as np
import pytest

from training.features import Feature, FeatureContract


def tiny_contract(embedding_dim: int = 4) -> FeatureContract:
    """One feature of every kind: vocab int (2 OOV), vocab string, multi-valued, hashed, numeric."""
    return FeatureContract(
        features=(
            Feature(
                "user_id",
                "categorical_int",
                "user",
                vocabulary=(10, 20, 30),
                num_oov=2,
                embedding_dim=embedding_dim,
            ),
            Feature("item", "categorical_string", "item", vocabulary=("a", "b"), embedding_dim=embedding_dim),
            Feature(
                "genres",
                "multi_categorical",
                "item",
                vocabulary=("x", "y", "z"),
                max_len=3,
                embedding_dim=embedding_dim,
            ),
            Feature("city", "categorical_string", "user", hash_buckets=7, embedding_dim=embedding_dim),
            Feature("age", "numeric", "user", mean=30.0, std=10.0),
        )
    )


def tiny_batch() -> dict[str, np.ndarray]:
    return {
        "user_id": np.array([10, 30, 99, -1], dtype=np.int64),
        "item": np.array(["a", "b", "zzz", ""], dtype=object),
        "genres": np.array(["x|y", "", "z||q|x|y", "y"], dtype=object),
        "city": np.array(["paris", "rome", "", "paris"], dtype=object),
        "age": np.array([20.0, np.nan, 50.0, np.inf], dtype=np.float32),
    }


@pytest.fixture
def contract() -> FeatureContract:
    return tiny_contract()


@pytest.fixture
def batch() -> dict[str, np.ndarray]:
    return tiny_batch()

"""Tiny hand-made interaction logs, the contract they feed and artefacts built from them.

Hand-computed facts the tests rely on (T = the newest event, half-life 1 day):
- popularity: i2 = 0.5 + 1 + 0.5 = 2.0, i3 = 1, i6 = 1, i1 = 0.25 + 0.5 = 0.75, i4 = i5 = 0;
- click sequences: u1 i1 i2 i3, u2 i1 i2, u3 i2 i6; users per item: i1 2, i2 3, i3 1, i6 1;
- item-CF: sim(i1,i2) = 2/sqrt(6), sim(i2,i3) = 1/sqrt(3), sim(i1,i3) = 0.5/sqrt(2), sim(i2,i6) = 1/sqrt(3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recommender_client.recall.artifacts import RecallArtifacts, load_artifacts, save_artifacts
from recommender_client.recall.build import BuildConfig, build_artifacts
from training.features import Feature, FeatureContract

DAY = 86400.0
T = 1_700_000_000.0


def tiny_contract() -> FeatureContract:
    return FeatureContract(
        features=(
            Feature("user_id", "categorical_string", "user", hash_buckets=64),
            Feature("age", "numeric", "user", mean=30.0, std=10.0),
            Feature("item_id", "categorical_string", "item", hash_buckets=64),
            Feature("category", "categorical_string", "item", vocabulary=("a", "b", "c")),
            Feature("tags", "multi_categorical", "item", vocabulary=("t1", "t2", "t3"), max_len=3),
            Feature("price", "numeric", "item", mean=10.0, std=5.0),
            Feature("device", "categorical_string", "context", vocabulary=("ios", "android")),
            Feature("hour", "categorical_int", "context", vocabulary=tuple(range(24))),
        )
    )


def tiny_events() -> dict[str, list[Any]]:
    rows = [
        ("u1", "i1", T - 2 * DAY, 1),
        ("u1", "i2", T - DAY, 1),
        ("u1", "i3", T, 1),
        ("u2", "i1", T - DAY, 1),
        ("u2", "i4", T - DAY, 0),
        ("u2", "i2", T, 1),
        ("u3", "i2", T - DAY, 1),
        ("u3", "i6", T, 1),
        ("u3", "i5", T - 2 * DAY, 0),
    ]
    return {
        "user_id": [r[0] for r in rows],
        "item_id": [r[1] for r in rows],
        "timestamp": [r[2] for r in rows],
        "label": [r[3] for r in rows],
    }


def tiny_items() -> dict[str, list[Any]]:
    return {
        "item_id": ["i1", "i2", "i3", "i4", "i5", "i6"],
        "category": ["a", "a", "b", "b", "c", "c"],
        "tags": ["t1|t2", "t2", "t3", "t1", "", "t3|t1"],
        "publish_time": [T - 30 * DAY] * 4 + [T - DAY, T + DAY],
        "price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    }


def tiny_users() -> dict[str, list[Any]]:
    return {"user_id": ["u1", "u2", "u3"], "age": [20.0, 40.0, None]}


@pytest.fixture()
def contract() -> FeatureContract:
    return tiny_contract()


@pytest.fixture()
def artifacts(contract: FeatureContract) -> RecallArtifacts:
    return build_artifacts(
        tiny_events(),
        contract=contract,
        items=tiny_items(),
        users=tiny_users(),
        config=BuildConfig(half_life_days=1.0, cf_neighbors=3, cf_window=5, history_len=10),
    )


@pytest.fixture()
def artifacts_dir(tmp_path: Path, artifacts: RecallArtifacts, contract: FeatureContract) -> Path:
    out = tmp_path / "artifacts"
    save_artifacts(artifacts, out)
    contract.save(out)
    return out


@pytest.fixture()
def loaded(artifacts_dir: Path) -> RecallArtifacts:
    return load_artifacts(artifacts_dir)

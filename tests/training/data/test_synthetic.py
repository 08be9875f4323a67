"""Synthetic generator: determinism, chunking, the known logit, entity tables and the contract."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from tests.training.data.conftest import SMALL
from training.data.base import DataError
from training.data.synthetic import (
    EVENT_SCHEMA,
    EVENTS_FILE,
    ITEMS_FILE,
    USERS_FILE,
    generate_events,
    load_synthetic,
    oracle_auc,
    read_config,
    read_events,
    synthetic_contract,
    write_synthetic,
)
from training.data.synthetic_world import DEVICES, SyntheticConfig, build_world, true_logit
from training.features import MULTI_VALUE_SEPARATOR, Entity, FeatureContract, FeatureKind


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    config = SyntheticConfig(num_rows=3_000, seed=11, num_users=200, num_items=100, num_categories=6)
    first, again = generate_events(config), generate_events(config)
    pd.testing.assert_frame_equal(first, again)
    other = generate_events(replace(config, seed=12))
    assert not first["user_id"].equals(other["user_id"])
    assert not np.allclose(first["p_true"], other["p_true"])


def test_chunked_write_equals_one_shot(tmp_path: Path) -> None:
    config = replace(SMALL, num_rows=9_000)
    one = write_synthetic(tmp_path / "one", config, chunk_rows=9_000)
    small = write_synthetic(tmp_path / "small", config, chunk_rows=1_000)
    odd = write_synthetic(tmp_path / "odd", config, chunk_rows=4_321)
    assert pq.ParquetFile(one / EVENTS_FILE).metadata.num_row_groups == 1
    assert pq.ParquetFile(small / EVENTS_FILE).metadata.num_row_groups == 9
    assert pq.ParquetFile(odd / EVENTS_FILE).metadata.num_row_groups == 3
    reference = pd.read_parquet(one / EVENTS_FILE)
    pd.testing.assert_frame_equal(pd.read_parquet(small / EVENTS_FILE), reference)
    pd.testing.assert_frame_equal(pd.read_parquet(odd / EVENTS_FILE), reference)
    # the in-memory route gives the same rows as the file route
    pd.testing.assert_frame_equal(generate_events(config), reference)
    assert not list(tmp_path.glob("*/.*.tmp")), "temporary files must be renamed or removed"


def test_written_schema_and_manifest(synthetic_dir: Path) -> None:
    modes = {p.name: p.stat().st_mode & 0o777 for p in synthetic_dir.iterdir()}
    assert modes == dict.fromkeys((EVENTS_FILE, USERS_FILE, ITEMS_FILE, "synthetic.json"), 0o644)
    schema = pq.read_schema(synthetic_dir / EVENTS_FILE)
    assert [(f.name, str(f.type)) for f in schema] == [(f.name, str(f.type)) for f in EVENT_SCHEMA]
    assert read_config(synthetic_dir) == SMALL


def test_p_true_is_sigmoid_of_the_true_logit(synthetic_dir: Path) -> None:
    """Recompute every row's probability from the world and the row's own features."""
    events = read_events(synthetic_dir)
    world = build_world(SMALL)
    user = events["user_id"].str[1:].astype(int).to_numpy()
    item = events["item_id"].str[1:].astype(int).to_numpy()
    device = events["device"].map({d: i for i, d in enumerate(DEVICES)}).to_numpy()
    logit = true_logit(world, user, item, events["hour"].to_numpy(), device, events["position"].to_numpy())
    np.testing.assert_allclose(events["p_true"].to_numpy(), 1 / (1 + np.exp(-logit)), rtol=1e-12)
    # labels are Bernoulli(p_true): observed CTR within 4 standard errors of the mean p_true
    n = len(events)
    p = events["p_true"].mean()
    assert abs(events["label"].mean() - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_interactions_carry_a_large_share_of_the_signal() -> None:
    """The pairwise part of the logit must not be negligible next to the main effects."""
    config = SyntheticConfig(num_rows=20_000, seed=3)
    no_interactions = replace(config, interaction_scale=0.0)
    full = generate_events(config)
    flat = generate_events(no_interactions)
    assert oracle_auc(full) > oracle_auc(flat) + 0.05


def test_oracle_auc_matches_sklearn(synthetic_dir: Path) -> None:
    splits = load_synthetic(synthetic_dir)
    for frame in (splits.train, splits.valid, splits.test):
        assert oracle_auc(frame) == pytest.approx(roc_auc_score(frame["label"], frame["p_true"]), abs=1e-12)
    assert 0.7 < oracle_auc(splits.test) < 0.95


def test_oracle_auc_needs_p_true() -> None:
    with pytest.raises(DataError, match="p_true"):
        oracle_auc(pd.DataFrame({"label": [0, 1]}))


def test_time_order_and_split(synthetic_dir: Path) -> None:
    events = read_events(synthetic_dir)
    assert np.all(np.diff(events["timestamp"].to_numpy()) >= 0)
    assert events["timestamp"].iloc[0] == SMALL.start_time
    assert events["timestamp"].iloc[-1] < SMALL.start_time + SMALL.span_seconds
    splits = load_synthetic(synthetic_dir)
    assert splits.sizes() == {"train": 9_600, "valid": 1_200, "test": 1_200}
    assert splits.train["timestamp"].max() < splits.valid["timestamp"].min()
    assert splits.valid["timestamp"].max() < splits.test["timestamp"].min()
    pd.testing.assert_frame_equal(
        pd.concat([splits.train, splits.valid, splits.test], ignore_index=True), events
    )


def test_entity_tables_agree_with_events(synthetic_dir: Path) -> None:
    events = read_events(synthetic_dir)
    users = pd.read_parquet(synthetic_dir / USERS_FILE)
    items = pd.read_parquet(synthetic_dir / ITEMS_FILE)
    assert len(users) == SMALL.num_users and users["user_id"].is_unique
    assert len(items) == SMALL.num_items and items["item_id"].is_unique
    assert {"item_id", "category", "tags", "publish_time", "price"} <= set(items.columns)
    joined = events.merge(items, on="item_id", suffixes=("", "_item")).merge(
        users, on="user_id", suffixes=("", "_user")
    )
    assert len(joined) == len(events)
    assert (joined["category"] == joined["category_item"]).all()
    assert (joined["tags"] == joined["tags_item"]).all()
    assert (joined["user_segment"] == joined["user_segment_user"]).all()
    np.testing.assert_array_equal(joined["price"], joined["price_item"])
    # an item is only ever shown after it was published
    assert (joined["publish_time"] <= joined["timestamp"]).all()
    tags = items["tags"].str.split(MULTI_VALUE_SEPARATOR)
    assert tags.map(len).between(1, 3).all()
    assert abs(users["traffic_share"].sum() - 1) < 1e-9


def test_contract_from_train_round_trips_json(synthetic_dir: Path, tmp_path: Path) -> None:
    splits = load_synthetic(synthetic_dir)
    contract = splits.contract
    kinds = {f.name: (f.kind, f.entity) for f in contract.features}
    assert kinds == {
        "user_id": (FeatureKind.CATEGORICAL_STRING, Entity.USER),
        "user_segment": (FeatureKind.CATEGORICAL_STRING, Entity.USER),
        "user_activity": (FeatureKind.NUMERIC, Entity.USER),
        "item_id": (FeatureKind.CATEGORICAL_STRING, Entity.ITEM),
        "category": (FeatureKind.CATEGORICAL_STRING, Entity.ITEM),
        "tags": (FeatureKind.MULTI_CATEGORICAL, Entity.ITEM),
        "price": (FeatureKind.NUMERIC, Entity.ITEM),
        "hour": (FeatureKind.CATEGORICAL_INT, Entity.CONTEXT),
        "device": (FeatureKind.CATEGORICAL_STRING, Entity.CONTEXT),
        "position": (FeatureKind.CATEGORICAL_INT, Entity.CONTEXT),
    }
    train = splits.train
    assert set(contract["user_id"].vocabulary) == set(train["user_id"])
    assert contract["user_id"].vocabulary[0] == train["user_id"].value_counts().idxmax()
    assert contract["position"].vocabulary == tuple(
        sorted(contract["position"].vocabulary, key=lambda p: (-(train["position"] == p).sum(), str(p)))
    )
    assert set(contract["position"].vocabulary) == set(range(1, SMALL.num_positions + 1))
    log_price = np.log(1.0 + train["price"].astype(float))  # prices are > 0, so sign(x) == 1
    price = contract["price"]
    assert price.transform == "log1p" and contract["user_activity"].transform == "none"
    assert price.mean == pytest.approx(log_price.mean()) and price.std == pytest.approx(log_price.std(ddof=0))
    assert price.default == pytest.approx(np.exp(log_price.mean()) - 1.0)  # raw: t(default) == mean
    assert contract["tags"].max_len == 3
    assert set(contract["tags"].vocabulary) == set(train["tags"].str.split("|").explode())
    assert all(f.num_oov >= 1 for f in contract.features if f.vocabulary is not None)
    loaded = FeatureContract.load(contract.save(tmp_path))
    assert loaded == contract
    assert synthetic_contract(train).names == contract.names


def test_config_rejects_nonsense() -> None:
    with pytest.raises(DataError, match="num_rows"):
        SyntheticConfig(num_rows=0)
    with pytest.raises(DataError, match="num_categories"):
        SyntheticConfig(num_items=5, num_categories=6)

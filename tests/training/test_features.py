"""The feature contract: validation, JSON round trip, derived views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.features import (
    CONTRACT_FILENAME,
    ContractError,
    Entity,
    Feature,
    FeatureContract,
    FeatureKind,
    join_multi,
)


def _contract() -> FeatureContract:
    return FeatureContract(
        features=(
            Feature(
                "user_id", FeatureKind.CATEGORICAL_STRING, Entity.USER, vocabulary=("u1", "u2"), num_oov=2
            ),
            Feature("item_id", "categorical_string", "item", hash_buckets=100, embedding_dim=4),
            Feature("hour", FeatureKind.CATEGORICAL_INT, Entity.CONTEXT, vocabulary=tuple(range(24))),
            Feature("price", FeatureKind.NUMERIC, Entity.ITEM, mean=10.0, std=2.5),
            Feature("tags", FeatureKind.MULTI_CATEGORICAL, Entity.ITEM, vocabulary=("a", "b"), max_len=3),
        ),
        metadata=(("source", "test"),),
    )


def test_json_round_trip_is_identical(tmp_path: Path) -> None:
    contract = _contract()
    written = contract.save(tmp_path)
    assert written == tmp_path / CONTRACT_FILENAME
    loaded = FeatureContract.load(tmp_path)
    assert loaded == contract
    assert loaded.to_json() == contract.to_json()
    assert json.loads(written.read_text())["features"][0]["vocabulary"] == ["u1", "u2"]


def test_derived_views() -> None:
    contract = _contract()
    assert contract.signature_spec() == {
        "user_id": "string",
        "item_id": "string",
        "hour": "int64",
        "price": "float32",
        "tags": "string",
    }
    assert [f.name for f in contract.by_entity("item")] == ["item_id", "price", "tags"]
    assert contract["user_id"].num_buckets == 4  # 2 vocabulary + 2 OOV
    assert contract["item_id"].num_buckets == 100
    assert contract["hour"].num_buckets == 25
    assert contract["price"].default == 10.0  # missing numerics default to the training mean
    assert contract["hour"].default == -1
    assert contract["tags"].default == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "kind": "numeric", "entity": "user", "std": 0.0}, "std > 0"),
        ({"name": "x", "kind": "categorical_string", "entity": "user"}, "exactly one of vocabulary"),
        (
            {"name": "x", "kind": "categorical_string", "entity": "user", "vocabulary": ("a",), "num_oov": 0},
            "num_oov",
        ),
        (
            {"name": "x", "kind": "categorical_string", "entity": "user", "vocabulary": ("a", "a")},
            "duplicates",
        ),
        ({"name": "x", "kind": "categorical_int", "entity": "user", "vocabulary": ("a",)}, "must be int"),
        ({"name": "x", "kind": "multi_categorical", "entity": "item", "hash_buckets": 4}, "max_len"),
        ({"name": "bad name", "kind": "numeric", "entity": "user"}, "must be non-empty"),
        ({"name": "x", "kind": "numeric", "entity": "shop"}, "shop"),
    ],
)
def test_invalid_features_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises((ContractError, ValueError), match=message):
        Feature(**kwargs)


def test_contract_rejects_duplicates_and_label_clash() -> None:
    price = Feature("price", "numeric", "item")
    with pytest.raises(ContractError, match="duplicate feature names: \\['price'\\]"):
        FeatureContract(features=(price, price))
    with pytest.raises(ContractError, match="label 'price'"):
        FeatureContract(features=(price,), label="price")


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ContractError, match="not valid JSON"):
        FeatureContract.load(bad)
    bad.write_text(json.dumps({"contract_version": 99, "features": []}))
    with pytest.raises(ContractError, match=r"c\.json: unsupported contract_version 99"):
        FeatureContract.load(bad)
    with pytest.raises(ContractError, match="cannot read"):
        FeatureContract.load(tmp_path / "missing.json")


def test_validate_columns_and_join_multi() -> None:
    contract = _contract()
    with pytest.raises(ContractError, match=r"train.parquet: missing feature columns \['price', 'tags'\]"):
        contract.validate_columns(["user_id", "item_id", "hour"], source="train.parquet")
    assert join_multi(["a", "b"]) == "a|b"
    with pytest.raises(ContractError, match="cannot contain"):
        join_multi(["a|b"])

"""The feature contract: validation, JSON round trip, derived views."""

from __future__ import annotations

import json
import math
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
            Feature("clicks", FeatureKind.NUMERIC, Entity.USER, mean=2.0, std=1.5, transform="log1p"),
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
    features = json.loads(written.read_text())["features"]
    assert features[0]["vocabulary"] == ["u1", "u2"]
    assert [f["transform"] for f in features] == ["none"] * 5 + ["log1p"]
    assert loaded["clicks"].transform == "log1p" and loaded["clicks"].default == contract["clicks"].default


def test_contract_json_without_transform_reads_as_none() -> None:
    data = _contract().to_dict()
    for feature in data["features"]:
        del feature["transform"]
    data["features"][-1]["default"] = 2.0
    loaded = FeatureContract.from_dict(data)
    assert {f.transform for f in loaded.features} == {"none"}
    assert loaded["clicks"].default == 2.0


def test_derived_views() -> None:
    contract = _contract()
    assert contract.signature_spec() == {
        "user_id": "string",
        "item_id": "string",
        "hour": "int64",
        "price": "float32",
        "tags": "string",
        "clicks": "float32",
    }
    assert [f.name for f in contract.by_entity("item")] == ["item_id", "price", "tags"]
    assert contract["user_id"].num_buckets == 4  # 2 vocabulary + 2 OOV
    assert contract["item_id"].num_buckets == 100
    assert contract["hour"].num_buckets == 25
    assert contract["price"].default == 10.0  # missing numerics default to the training mean
    assert contract["hour"].default == -1
    assert contract["tags"].default == ""
    # log1p: mean/std describe sign(x) * log1p(|x|); the default is the raw x with t(x) == mean.
    assert contract["clicks"].default == pytest.approx(math.e**2 - 1.0, rel=1e-15)
    negative = Feature("delta", "numeric", "context", mean=-0.5, transform="log1p")
    assert negative.default == pytest.approx(-(math.exp(0.5) - 1.0), rel=1e-15)
    assert Feature("z", "numeric", "context", mean=0.0, transform="log1p").default == 0.0
    assert Feature("raw", "numeric", "context", mean=3.0, default=-7.0, transform="log1p").default == -7.0


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
        (
            {"name": "x", "kind": "numeric", "entity": "user", "transform": "log"},
            r"feature 'x': transform must be one of \['none', 'log1p'\], got 'log'",
        ),
        (
            {"name": "x", "kind": "numeric", "entity": "user", "transform": None},
            r"feature 'x': transform must be one of .*, got None",
        ),
        (
            {
                "name": "x",
                "kind": "categorical_string",
                "entity": "user",
                "hash_buckets": 4,
                "transform": "log1p",
            },
            r"feature 'x': transform 'log1p' applies to numeric features only, not categorical_string",
        ),
        (
            {"name": "x", "kind": "numeric", "entity": "user", "mean": 90.0, "transform": "log1p"},
            r"feature 'x': a log1p feature's mean must lie within \+-88\.7228 .*got 90\.0",
        ),
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
        contract.validate_columns(["user_id", "item_id", "hour", "clicks"], source="train.parquet")
    assert join_multi(["a", "b"]) == "a|b"
    with pytest.raises(ContractError, match="cannot contain"):
        join_multi(["a|b"])

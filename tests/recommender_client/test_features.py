"""Feature join: every contract column, right dtypes, cold-start defaults, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recommender_client.features import (
    ContextError,
    FeatureError,
    FeatureJoiner,
    InMemoryFeatureStore,
    coerce_value,
    validate_inputs,
)
from recommender_client.recall.artifacts import RecallArtifacts
from training.features import Feature, FeatureContract


class RowStore:
    """A FeatureStore offering only the protocol's row lookups (as a remote store would)."""

    def __init__(self, inner: InMemoryFeatureStore) -> None:
        self.inner = inner

    def get_user(self, user_id):
        return self.inner.get_user(user_id)

    def get_items(self, item_ids):
        return self.inner.get_items(item_ids)


def joiner(contract: FeatureContract, artifacts: RecallArtifacts) -> FeatureJoiner:
    return FeatureJoiner(contract, InMemoryFeatureStore.from_artifacts(artifacts))


def test_join_known_user_and_items(contract, loaded) -> None:
    inputs, user_known, item_known = joiner(contract, loaded).join(
        "u1", ["i3", "i6"], {"device": "ios", "hour": 7}
    )
    assert list(inputs) == list(contract.names)
    assert user_known and item_known.tolist() == [True, True]
    assert inputs["user_id"].tolist() == ["u1", "u1"]
    assert inputs["age"].dtype == np.float32 and inputs["age"].tolist() == [20.0, 20.0]
    assert inputs["item_id"].tolist() == ["i3", "i6"]
    assert inputs["category"].tolist() == ["b", "c"]
    assert inputs["tags"].tolist() == ["t3", "t3|t1"]
    assert inputs["price"].tolist() == [3.0, 6.0]
    assert inputs["device"].tolist() == ["ios", "ios"]
    assert inputs["hour"].dtype == np.int64 and inputs["hour"].tolist() == [7, 7]


def test_unknown_user_and_item_take_contract_defaults(contract, loaded) -> None:
    inputs, user_known, item_known = joiner(contract, loaded).join("nobody", ["i1", "zz"], {})
    assert not user_known and item_known.tolist() == [True, False]
    assert inputs["user_id"].tolist() == ["nobody", "nobody"]  # the id itself: hashed like any unseen id
    assert inputs["age"].tolist() == [30.0, 30.0]  # contract default = mean
    assert inputs["item_id"].tolist() == ["i1", "zz"]
    assert inputs["category"].tolist() == ["a", ""]
    assert inputs["price"].tolist() == [1.0, 10.0]
    assert inputs["device"].tolist() == ["", ""]
    assert inputs["hour"].tolist() == [-1, -1]
    # a known user with a missing value (u3 has no age) gets the default for that feature only
    inputs, _, _ = joiner(contract, loaded).join("u3", ["i1"], {})
    assert inputs["age"].tolist() == [30.0] and inputs["user_id"].tolist() == ["u3"]


def test_empty_candidate_list_gives_empty_columns(contract, loaded) -> None:
    inputs, _, _ = joiner(contract, loaded).join("u1", [], {})
    assert all(len(col) == 0 for col in inputs.values())
    assert inputs["hour"].dtype == np.int64


def test_bad_context_values_name_the_field(contract, loaded) -> None:
    j = joiner(contract, loaded)
    with pytest.raises(ContextError, match=r"context\['hour'\]: feature 'hour' takes an int64, got '7'"):
        j.join("u1", ["i1"], {"hour": "7"})
    with pytest.raises(FeatureError, match=r"context\['device'\]: feature 'device' takes a string, got 3"):
        j.join("u1", ["i1"], {"device": 3})
    assert j.check_context({"hour": 5}) == {"device": "", "hour": 5}
    with pytest.raises(
        ContextError,
        match=r"context has keys the feature contract does not know: \['extra', 'hours'\] "
        r"\(context features: \['device', 'hour'\]\)",
    ):
        j.check_context({"hour": 5, "extra": "x", "hours": 5})
    for too_big in (2**63, -(2**63) - 1, 10**400):
        with pytest.raises(ContextError, match=r"takes an int64, got .* \(outside -2\*\*63..2\*\*63-1\)"):
            j.check_context({"hour": too_big})
    assert j.check_context({"hour": 2**63 - 1})["hour"] == 2**63 - 1
    age = next(f for f in contract.features if f.name == "age")
    for too_big in (1e39, -(10**400)):
        with pytest.raises(FeatureError, match=r"feature 'age' is float32, got .* \(beyond \+-3.403e\+38\)"):
            coerce_value(age, too_big, where="user 'u1'")
    assert coerce_value(age, 3.4e38, where="user 'u1'") == 3.4e38


def test_store_values_are_validated_and_lists_joined() -> None:
    contract = FeatureContract(
        features=(
            Feature("item_id", "categorical_int", "item", hash_buckets=10),
            Feature("tags", "multi_categorical", "item", hash_buckets=10, max_len=4),
            Feature("score", "numeric", "item"),
        )
    )
    store = InMemoryFeatureStore(
        user_ids=[],
        user_columns={},
        item_ids=["1", "2"],
        item_columns={"tags": [["x", "y"], None], "score": [0.5, True]},
    )
    j = FeatureJoiner(contract, RowStore(store))
    inputs, _, _ = j.join("u", ["1", "abc"], {})
    assert inputs["item_id"].tolist() == [1, -1]  # int id feature: parsed, non-numeric -> default
    assert inputs["tags"].tolist() == ["x|y", ""]
    with pytest.raises(FeatureError, match="item '2': feature 'score' is numeric, got True"):
        j.join("u", ["2"], {})
    with pytest.raises(FeatureError, match="item '2': feature 'score' is numeric, got True"):
        FeatureJoiner(contract, store)  # the columnar path checks every row up front
    with pytest.raises(FeatureError, match="item feature 'score': 1 values for 2 ids"):
        InMemoryFeatureStore(user_ids=[], user_columns={}, item_ids=["1", "2"], item_columns={"score": [1.0]})


def test_validate_inputs_names_the_offending_feature(contract, loaded) -> None:
    inputs, _, _ = joiner(contract, loaded).join("u1", ["i1", "i2"], {})
    assert validate_inputs(contract, inputs) == 2
    with pytest.raises(FeatureError, match=r"missing \['price'\], unexpected \['bogus'\]"):
        validate_inputs(
            contract, {k: v for k, v in inputs.items() if k != "price"} | {"bogus": inputs["age"]}
        )
    with pytest.raises(FeatureError, match="feature 'hour': dtype int32, expected int64"):
        validate_inputs(contract, inputs | {"hour": inputs["hour"].astype(np.int32)})
    with pytest.raises(FeatureError, match=r"feature 'age': shape \(2, 1\), expected \[N\]"):
        validate_inputs(contract, inputs | {"age": inputs["age"].reshape(2, 1)})
    with pytest.raises(FeatureError, match="different lengths"):
        validate_inputs(contract, inputs | {"age": inputs["age"][:1]})


def test_columnar_and_row_paths_agree(contract, loaded) -> None:
    store = InMemoryFeatureStore.from_artifacts(loaded)
    items = ["i6", "zz", "i1", "i1", "i3"]
    fast, fast_user, fast_known = FeatureJoiner(contract, store).join("u2", items, {"hour": 3})
    slow, slow_user, slow_known = FeatureJoiner(contract, RowStore(store)).join("u2", items, {"hour": 3})
    assert fast_user == slow_user and fast_known.tolist() == slow_known.tolist() == [
        True,
        False,
        True,
        True,
        True,
    ]
    for name in contract.names:
        assert fast[name].dtype == slow[name].dtype
        assert fast[name].tolist() == slow[name].tolist(), name


def test_recall_positions_give_the_same_join_as_ids(contract, loaded) -> None:
    """Positions from recall replace the id lookups only for the store's own catalogue."""
    store = InMemoryFeatureStore.from_artifacts(loaded)
    items = ["i6", "zz", "i1", "i3"]
    pos = loaded.catalog.positions(items)
    assert pos.tolist()[1] == -1  # "zz" is not in the catalogue
    join = FeatureJoiner(contract, store)
    by_ids, _, known_ids = join.join("u2", items, {"hour": 3})
    by_pos, _, known_pos = join.join("u2", items, {"hour": 3}, positions=(loaded.catalog, pos))
    assert known_ids.tolist() == known_pos.tolist() == [True, False, True, True]
    for name in contract.names:
        assert by_pos[name].tolist() == by_ids[name].tolist(), name
    assert by_pos["price"].tolist() == [6.0, 10.0, 1.0, 3.0]  # "zz" takes the default
    # positions of another catalogue, even an equal copy (here: deliberately wrong ones), are not trusted
    wrong = np.array([0, 0, 0, 0])
    copy = dataclasses.replace(loaded.catalog)
    assert copy == loaded.catalog and copy is not loaded.catalog
    other, _, _ = join.join("u2", items, {"hour": 3}, positions=(copy, wrong))
    assert other["item_id"].tolist() == items and other["price"].tolist() == [6.0, 10.0, 1.0, 3.0]


def test_bad_stored_user_values_fail_at_start(contract) -> None:
    store = InMemoryFeatureStore(
        user_ids=["u1", "u2"], user_columns={"age": [20.0, "old"]}, item_ids=[], item_columns={}
    )
    with pytest.raises(FeatureError, match="user 'u2': feature 'age' is numeric, got 'old'"):
        FeatureJoiner(contract, store)

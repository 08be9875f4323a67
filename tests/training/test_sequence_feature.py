"""The ``sequence`` contract kind: declaration checks, JSON round trip and in-graph splitting."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training.features import ContractError, Entity, Feature, FeatureContract, FeatureKind
from training.layers import FeaturePreprocessor

ITEMS = ("a", "b", "c")


def _contract(**history: object) -> FeatureContract:
    spec = {
        "name": "history",
        "kind": "sequence",
        "entity": Entity.USER,
        "vocabulary": ITEMS,
        "max_len": 3,
        "item_feature": "item_id",
        **history,
    }
    return FeatureContract(
        features=(
            Feature("item_id", FeatureKind.CATEGORICAL_STRING, Entity.ITEM, vocabulary=ITEMS),
            Feature(**spec),  # type: ignore[arg-type]
        )
    )


def test_sequence_is_a_string_input_and_round_trips_through_json() -> None:
    contract = _contract()
    assert contract.signature_spec() == {"item_id": "string", "history": "string"}
    again = FeatureContract.from_json(contract.to_json())
    assert again == contract
    assert again["history"].item_feature == "item_id"
    assert [f.name for f in again.sequences] == ["history"]


def test_contracts_without_sequences_keep_their_json_keys() -> None:
    plain = Feature("tags", FeatureKind.MULTI_CATEGORICAL, Entity.ITEM, vocabulary=ITEMS, max_len=2)
    assert "item_feature" not in plain.to_dict()


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ({"item_feature": "nope"}, "item_feature 'nope' is not in the contract"),
        ({"vocabulary": ("a", "b")}, "must equal those of item_feature 'item_id'"),
        ({"embedding_dim": 4}, "must equal those of item_feature 'item_id'"),
        ({"item_feature": None}, "item_feature is required for sequence features"),
        ({"max_len": 0}, "max_len >= 1"),
    ],
)
def test_bad_sequences_are_refused(history: dict[str, object], match: str) -> None:
    with pytest.raises(ContractError, match=match):
        _contract(**history)


def test_item_feature_is_only_for_sequences() -> None:
    with pytest.raises(ContractError, match="only for them"):
        Feature("x", FeatureKind.CATEGORICAL_STRING, Entity.ITEM, vocabulary=ITEMS, item_feature="y")


def test_history_is_split_truncated_and_padded_with_the_item_ids() -> None:
    layer = FeaturePreprocessor(_contract().to_dict())
    out = layer(
        {
            "item_id": tf.constant(["c", "a", "zz"]),
            "history": tf.constant(["b|a", "c|b|a|b", ""]),
        }
    )
    # vocabulary index i -> id i + 1 (one OOV bucket, id 0): a=1, b=2, c=3; padding -1
    np.testing.assert_array_equal(out["item_id"].numpy(), [3, 1, 0])
    np.testing.assert_array_equal(out["history"].numpy(), [[2, 1, -1], [3, 2, 1], [-1, -1, -1]])


def test_host_replica_splits_the_history_like_the_graph() -> None:
    from training.models import preprocess_numpy

    contract = _contract()
    columns = {
        "item_id": np.array(["c", "a"], dtype=object),
        "history": np.array(["b|zz", "a|a|c|b"], dtype=object),
    }
    graph = FeaturePreprocessor(contract.to_dict())(
        {k: tf.constant(v.astype(str)) for k, v in columns.items()}
    )
    host = preprocess_numpy(contract, columns)
    np.testing.assert_array_equal(host["history"], graph["history"].numpy())
    np.testing.assert_array_equal(host["history"][1], [1, 1, 3])

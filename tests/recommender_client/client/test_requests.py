"""Request columns from the feature contract, and output shape checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender_client.client.errors import BadResponse, InvalidRequest
from recommender_client.client.requests import build_request_columns, validate_outputs
from training.features import Feature, FeatureContract


@pytest.fixture()
def contract() -> FeatureContract:
    return FeatureContract(
        features=(
            Feature("user_country", "categorical_string", "user", vocabulary=("de", "fr"), default="zz"),
            Feature("item_id", "categorical_int", "item", hash_buckets=100),
            Feature("item_price", "numeric", "item", mean=10.0, std=2.0),
            Feature("item_tags", "multi_categorical", "item", hash_buckets=50, max_len=4),
        )
    )


def test_columns_have_wire_dtypes_defaults_and_joined_lists(contract):
    rows = [
        {"user_country": "de", "item_id": 7, "item_price": 3, "item_tags": ["a", "b"]},
        {"item_id": np.int64(2**40), "item_price": None, "item_tags": "x|y"},
        {"user_country": "fr", "item_id": 0, "item_price": np.float32(0.5), "item_tags": []},
    ]
    columns = build_request_columns(contract, rows)
    assert list(columns) == ["user_country", "item_id", "item_price", "item_tags"]
    assert columns["user_country"].tolist() == ["de", "zz", "fr"]  # missing -> feature.default
    assert columns["item_id"].dtype == np.int64
    assert columns["item_id"].tolist() == [7, 2**40, 0]
    assert columns["item_price"].dtype == np.float32
    assert columns["item_price"].tolist() == [3.0, 10.0, 0.5]  # None -> default = mean
    assert columns["item_tags"].tolist() == ["a|b", "x|y", ""]
    assert all(c.shape == (3,) for c in columns.values())


def test_missing_int_takes_natural_default(contract):
    columns = build_request_columns(contract, [{"user_country": "de"}])
    assert columns["item_id"].tolist() == [-1]
    assert columns["item_tags"].tolist() == [""]


def test_unknown_feature_names_are_rejected_unless_ignored(contract):
    with pytest.raises(InvalidRequest, match=r"row 1: unknown feature names \['item_prise'\]"):
        build_request_columns(contract, [{}, {"item_prise": 1.0}])
    columns = build_request_columns(contract, [{"request_id": "r1", "item_id": 3}], ignore={"request_id"})
    assert "request_id" not in columns and columns["item_id"].tolist() == [3]


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        ({"item_price": "3.5"}, "feature 'item_price' row 1: expected a number, got str '3.5'"),
        ({"item_price": True}, "feature 'item_price' row 1: expected a number, got bool"),
        ({"item_price": math.nan}, "feature 'item_price' row 1: non-finite value nan"),
        ({"item_price": -math.inf}, "feature 'item_price' row 1: non-finite value -inf"),
        ({"item_price": 1e300}, "feature 'item_price' row 1: .*overflows float32"),
        ({"item_id": 2.0}, "feature 'item_id' row 1: expected an integer, got float"),
        ({"item_id": 2**64}, "feature 'item_id' row 1: .*does not fit int64"),
        ({"user_country": 5}, "feature 'user_country' row 1: expected a string, got int"),
        ({"item_tags": ["a", 1]}, "feature 'item_tags' row 1: expected a list of strings"),
        ({"item_tags": ["a|b"]}, "feature 'item_tags' row 1: multi-valued entries cannot contain"),
    ],
)
def test_wrong_values_name_feature_and_row(contract, row, pattern):
    with pytest.raises(InvalidRequest, match=pattern):
        build_request_columns(contract, [{"item_price": 1.0}, row])


def test_no_rows_and_non_mapping_rows(contract):
    with pytest.raises(InvalidRequest, match="zero rows"):
        build_request_columns(contract, [])
    with pytest.raises(InvalidRequest, match="row 0: expected a mapping"):
        build_request_columns(contract, [["item_id", 3]])


def test_validate_outputs_accepts_one_score_per_row():
    outputs = {"ctr": np.array([0.1, 0.9], np.float32), "logit": np.zeros((2, 2))}
    checked = validate_outputs(outputs, num_rows=2)
    assert list(checked) == ["ctr"]
    assert checked["ctr"].tolist() == pytest.approx([0.1, 0.9])


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (np.zeros((3, 3), np.float32), r"shape \[3, 3\], expected \[3\]"),  # [N] broadcast against [N,1]
        (np.zeros((3, 1), np.float32), r"shape \[3, 1\], expected \[3\]"),
        (np.zeros(2, np.float32), r"shape \[2\], expected \[3\]"),
        (np.array([b"a", b"b", b"c"], dtype=object), "dtype object"),
        (np.array([0.1, np.nan, 0.3], np.float32), "row 1 is nan"),
    ],
)
def test_validate_outputs_rejects_wrong_shapes_and_values(value, pattern):
    with pytest.raises(BadResponse, match=pattern):
        validate_outputs({"ctr": value}, num_rows=3)


def test_validate_outputs_names_missing_output():
    with pytest.raises(BadResponse, match=r"no output 'ctr' \(got \['y'\]\)"):
        validate_outputs({"y": np.zeros(1)}, num_rows=1)

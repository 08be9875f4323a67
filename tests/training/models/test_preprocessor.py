"""FeaturePreprocessor: the documented in-graph semantics, checked value by value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tests.training.models.conftest import tiny_contract
from training.features import ContractError, Feature, FeatureContract
from training.layers import FeaturePreprocessor

# FarmHash Fingerprint64 of the empty string is the constant k2 of farmhashna.
FINGERPRINT_OF_EMPTY = 0x9AE16A3B2F90404F


def _bucket(values: list[str], n: int) -> list[int]:
    return tf.strings.to_hash_bucket_fast(tf.constant(values), n).numpy().tolist()


def test_preprocessor_follows_the_contract(contract: FeatureContract, batch: dict[str, np.ndarray]) -> None:
    out = {k: v.numpy() for k, v in FeaturePreprocessor(contract.to_dict())(batch).items()}
    assert list(out) == list(contract.names)
    # Vocabulary (10, 20, 30) with 2 OOV buckets: index + 2; unseen ints hash their decimal string.
    oov_99, oov_minus_1 = _bucket(["99", "-1"], 2)
    np.testing.assert_array_equal(out["user_id"], [2, 4, oov_99, oov_minus_1])
    # One OOV bucket: every unseen value, the empty string included, is id 0.
    np.testing.assert_array_equal(out["item"], [1, 2, 0, 0])
    np.testing.assert_array_equal(out["genres"], [[1, 2, -1], [-1, -1, -1], [3, 0, 1], [2, -1, -1]])
    np.testing.assert_array_equal(out["city"], _bucket(["paris", "rome", "", "paris"], 7))
    assert out["city"][2] == FINGERPRINT_OF_EMPTY % 7
    np.testing.assert_array_equal(out["age"], np.array([-1.0, 0.0, 2.0, 0.0], np.float32))
    assert {k: v.dtype for k, v in out.items()} == {
        "user_id": np.int32,
        "item": np.int32,
        "genres": np.int32,
        "city": np.int32,
        "age": np.float32,
    }


def test_unseen_strings_spread_over_oov_buckets_by_fingerprint() -> None:
    contract = FeatureContract.from_dict(
        {
            **tiny_contract().to_dict(),
            "features": [
                {
                    "name": "tag",
                    "kind": "multi_categorical",
                    "entity": "item",
                    "vocabulary": ["k"],
                    "num_oov": 3,
                    "max_len": 4,
                }
            ],
        }
    )
    out = FeaturePreprocessor(contract.to_dict())({"tag": tf.constant(["k|new|", "||", "é|k|k|k|k"])})
    expected_new, expected_e = _bucket(["new", "é"], 3)
    np.testing.assert_array_equal(
        out["tag"].numpy(), [[3, expected_new, -1, -1], [-1, -1, -1, -1], [expected_e, 3, 3, 3]]
    )


def test_numeric_overflow_and_int32_inputs_are_handled() -> None:
    contract = FeatureContract.from_dict(
        {
            "contract_version": 1,
            "features": [
                {"name": "x", "kind": "numeric", "entity": "context", "mean": -3.0e38, "std": 0.5},
                {"name": "n", "kind": "categorical_int", "entity": "item", "vocabulary": [7], "num_oov": 1},
            ],
        }
    )
    out = FeaturePreprocessor(contract.to_dict())(
        {"x": tf.constant([3.0e38, -3.0e38]), "n": tf.constant([7, 8], tf.int32)}
    )
    # (3e38 + 3e38) / 0.5 overflows float32 -> inf -> 0; the other row is exactly 0 too.
    np.testing.assert_array_equal(out["x"].numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(out["n"].numpy(), [1, 0])


def test_log1p_numeric_is_transformed_before_normalising() -> None:
    # mean 1, std 0.5 describe t(x) = sign(x) * log1p(|x|): t(e - 1) = 1 -> 0, t(0) = 0 -> -2,
    # t(-(e^3 - 1)) = -3 -> -8, t(e^5 - 1) = 5 -> 8, t(3e38) = ln(1 + 3e38) = 88.5968... -> 175.19...
    spend = Feature("spend", "numeric", "user", mean=1.0, std=0.5, transform="log1p")
    plain = Feature("plain", "numeric", "user", mean=1.0, std=0.5)
    contract = FeatureContract(features=(spend, plain))
    raw = [math.e - 1, 0.0, -0.0, -(math.e**3 - 1), math.e**5 - 1, 3e38, np.nan, np.inf, -np.inf]
    x = tf.constant(raw, tf.float32)
    out = FeaturePreprocessor(contract.to_dict())({"spend": x, "plain": x})
    expected = [0.0, -2.0, -2.0, -8.0, 8.0, (math.log(3e38) - 1.0) / 0.5, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(out["spend"].numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["spend"].numpy()[[1, 2, 6, 7, 8]], [-2.0, -2.0, 0.0, 0.0, 0.0])
    assert out["spend"].dtype == tf.float32
    # Without the transform the same raw values are only normalised: (e - 1 - 1) / 0.5.
    np.testing.assert_allclose(out["plain"].numpy()[:2], [(math.e - 2.0) / 0.5, -2.0], rtol=1e-6)
    # The raw default a client sends for a missing value is e^1 - 1, which normalises to 0.
    assert spend.default == pytest.approx(math.e - 1.0, rel=1e-15)
    missing = FeaturePreprocessor(contract.to_dict())(
        {"spend": tf.constant([spend.default], tf.float32), "plain": tf.constant([plain.default], tf.float32)}
    )
    assert abs(float(missing["spend"][0])) < 1e-6 and float(missing["plain"][0]) == 0.0


def test_config_round_trip_keeps_the_contract(
    contract: FeatureContract, batch: dict[str, np.ndarray]
) -> None:
    layer = FeaturePreprocessor(contract.to_dict(), name="preprocess")
    config = json.loads(json.dumps(layer.get_config()))
    clone = FeaturePreprocessor.from_config(config)
    assert clone.contract == contract and clone.name == "preprocess"
    for name, value in layer(batch).items():
        np.testing.assert_array_equal(value.numpy(), clone(batch)[name].numpy())


def test_bad_arguments_and_missing_inputs_are_named(contract: FeatureContract) -> None:
    with pytest.raises(TypeError, match="contract's JSON dict"):
        FeaturePreprocessor(contract)  # type: ignore[arg-type]
    huge = {
        **contract.to_dict(),
        "features": [{"name": "h", "kind": "categorical_string", "entity": "user", "hash_buckets": 2**31}],
    }
    with pytest.raises(ValueError, match=r"features \['h'\] have >= 2\*\*31 buckets"):
        FeaturePreprocessor(huge)
    with pytest.raises(TypeError, match="inputs must be a dict"):
        FeaturePreprocessor(contract.to_dict())([tf.constant([1])])
    with pytest.raises(ContractError, match="unsupported contract_version"):
        FeaturePreprocessor({"features": []})
    with pytest.raises(ValueError, match=r"missing input features \['city', 'age'\]"):
        FeaturePreprocessor(contract.to_dict())(
            {"user_id": tf.constant([1], tf.int64), "item": tf.constant(["a"]), "genres": tf.constant(["x"])}
        )

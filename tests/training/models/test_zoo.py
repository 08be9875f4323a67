"""The five models: outputs, hand-computed LR/FM logits, .keras round trips, seeding, training."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.models.conftest import tiny_batch, tiny_contract
from training.features import Feature, FeatureContract
from training.layers import FeaturePreprocessor
from training.models import MODEL_NAMES, ModelConfig, build_model, split_model, with_logit

SMALL = ModelConfig(hidden_units=(8, 4), num_cross_layers=2)


def _predict(model: keras.Model, batch: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict(batch, verbose=0))


def test_model_names() -> None:
    assert MODEL_NAMES == ("lr", "fm", "wide_deep", "deepfm", "dcnv2")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_is_raw_inputs_preprocess_core(name: str, contract: FeatureContract, batch: dict) -> None:
    model = build_model(name, contract, config=SMALL, seed=3)
    # Keras flattens dict inputs in key order; names, dtypes and shapes are what clients rely on.
    assert {t.name: (t.dtype, tuple(t.shape)) for t in model.inputs} == {
        f.name: (f.dtype, (None,)) for f in contract.features
    }
    preprocess, core = split_model(model)
    assert isinstance(preprocess, FeaturePreprocessor) and preprocess.contract == contract
    assert all(t.dtype in ("int32", "float32") for t in core.inputs)
    probability = _predict(model, batch)
    assert probability.shape == (4,) and probability.dtype == np.float32
    assert np.all((probability > 0) & (probability < 1))
    np.testing.assert_allclose(np.asarray(core(preprocess(batch))), probability, rtol=1e-6)
    heads = with_logit(model).predict(batch, verbose=0)
    np.testing.assert_allclose(heads["ctr"], probability, rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-heads["logit"])), probability, rtol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_keras_round_trip_needs_no_custom_objects(name: str, tmp_path: Path) -> None:
    contract, batch = tiny_contract(), tiny_batch()
    config = ModelConfig(hidden_units=(8,), dropout=0.2, low_rank=2, dcn_structure="parallel", l2=1e-4)
    model = build_model(name, contract, config=config, seed=1)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(_predict(loaded, batch), _predict(model, batch))
    assert split_model(loaded)[0].contract == contract


def test_lr_logit_matches_hand_computation(contract: FeatureContract, batch: dict) -> None:
    model = build_model("lr", contract, seed=0)
    _, core = split_model(model)
    w = {
        f.name: core.get_layer(f"linear_{f.name}").get_weights()[0][:, 0]
        for f in contract.features
        if f.is_categorical
    }
    kernel, bias = core.get_layer("linear").get_weights()
    ids = {k: v.numpy() for k, v in FeaturePreprocessor(contract.to_dict())(batch).items()}
    logits = []
    for row in range(4):
        genres = [w["genres"][i] for i in ids["genres"][row] if i >= 0]
        logits.append(
            bias
            + w["user_id"][ids["user_id"][row]]
            + w["item"][ids["item"][row]]
            + (np.mean(genres) if genres else 0.0)
            + w["city"][ids["city"][row]]
            + kernel[0] * ids["age"][row]
        )
    np.testing.assert_allclose(
        with_logit(model).predict(batch, verbose=0)["logit"], logits, rtol=1e-5, atol=1e-6
    )


def test_fm_logit_is_linear_plus_pairwise_dot_products(contract: FeatureContract, batch: dict) -> None:
    model = build_model("fm", contract, seed=0)
    _, core = split_model(model)
    heads = with_logit(model)
    ids = {k: v.numpy() for k, v in FeaturePreprocessor(contract.to_dict())(batch).items()}
    linear = keras.Model(core.input, core.get_layer("linear").output)(ids).numpy()
    tables = {
        f.name: core.get_layer(f"emb_{f.name}").get_weights()[0]
        for f in contract.features
        if f.is_categorical
    }
    v_age = core.get_layer("emb_numeric").get_weights()[0][0]
    expected = []
    for row in range(4):
        genres = [tables["genres"][i] for i in ids["genres"][row] if i >= 0]
        vectors = [
            tables["user_id"][ids["user_id"][row]],
            tables["item"][ids["item"][row]],
            np.mean(genres, axis=0) if genres else np.zeros(4),
            tables["city"][ids["city"][row]],
            ids["age"][row] * v_age,
        ]
        pairs = sum(vectors[i] @ vectors[j] for i in range(5) for j in range(i + 1, 5))
        expected.append(linear[row] + pairs)
    np.testing.assert_allclose(heads.predict(batch, verbose=0)["logit"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["deepfm", "dcnv2"])
def test_multi_valued_pooling_ignores_padding_empty_tokens_and_repeats(
    name: str, contract: FeatureContract
) -> None:
    model = build_model(name, contract, config=SMALL, seed=2)
    batch = {k: np.repeat(v[:1], 4) for k, v in tiny_batch().items()}
    batch["genres"] = np.array(["x", "x|x", "|x||", "x|x|x|y"], dtype=object)
    probability = _predict(model, batch)
    # Mean over present tokens: padding, empty tokens, repeats and tokens past max_len=3 change nothing.
    np.testing.assert_allclose(probability, probability[0], atol=1e-7)
    batch["genres"] = np.array(["x", "x|y", "y", ""], dtype=object)
    assert len(set(_predict(model, batch).tolist())) == 4


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_weights_other_seed_other_weights(name: str, contract: FeatureContract) -> None:
    first = build_model(name, contract, config=SMALL, seed=11).get_weights()
    again = build_model(name, contract, config=SMALL, seed=11).get_weights()
    other = build_model(name, contract, config=SMALL, seed=12).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dcnv2_variants_have_the_requested_cross_layers(contract: FeatureContract) -> None:
    deep_input_dim = 4 * 4 + 1  # four categorical embeddings of dim 4 plus one numeric
    low = build_model(
        "dcnv2", contract, config=ModelConfig(num_cross_layers=3, low_rank=2, dcn_structure="parallel")
    )
    cross = split_model(low)[1].get_layer("cross")
    assert [tuple(w.shape) for w in cross.weights] == [
        (deep_input_dim, 2),
        (2, deep_input_dim),
        (deep_input_dim,),
    ] * 3
    split_model(low)[1].get_layer("cross_deep")
    full = build_model("dcnv2", contract, config=ModelConfig(num_cross_layers=1, hidden_units=()))
    assert [tuple(w.shape) for w in split_model(full)[1].get_layer("cross").weights] == [
        (deep_input_dim, deep_input_dim),
        (deep_input_dim,),
    ]


def test_fm_family_needs_equal_dims_or_an_override() -> None:
    mixed = FeatureContract(
        features=(
            Feature("a", "categorical_string", "user", vocabulary=("p",), embedding_dim=4),
            Feature("b", "categorical_string", "item", hash_buckets=5, embedding_dim=6),
        )
    )
    with pytest.raises(ValueError, match=r"deepfm needs one embedding dim .*set ModelConfig.embedding_dim"):
        build_model("deepfm", mixed)
    fm = build_model("fm", mixed, config=ModelConfig(embedding_dim=3))
    assert split_model(fm)[1].get_layer("emb_b").get_weights()[0].shape == (5, 3)
    build_model("wide_deep", mixed)  # the deep input concatenates unequal dims


def test_errors_name_the_problem(contract: FeatureContract) -> None:
    with pytest.raises(ValueError, match=r"unknown model 'xgb'; choose one of \['lr'"):
        build_model("xgb", contract)
    with pytest.raises(TypeError, match="contract must be a FeatureContract"):
        build_model("lr", contract.to_dict())  # type: ignore[arg-type]
    plain = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="was not built by build_model"):
        split_model(plain)


def test_model_config_json_round_trip_and_checks() -> None:
    config = ModelConfig(
        embedding_dim=16, hidden_units=(32, 8), dropout=0.1, low_rank=4, dcn_structure="parallel", l2=1e-5
    )
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(
        ValueError, match=r"dropout must be in \[0, 1\), got 1.5; dcn_structure must be one of"
    ):
        ModelConfig(dropout=1.5, dcn_structure="mixed")
    with pytest.raises(ValueError, match=r"unknown keys \['depth'\]"):
        ModelConfig.from_dict({"depth": 3})


def test_a_few_gradient_steps_reduce_the_loss(contract: FeatureContract) -> None:
    rng = np.random.default_rng(0)
    n = 64
    items = rng.choice(["a", "b", "c"], size=n)
    batch = {
        "user_id": rng.choice([10, 20, 30, 40], size=n).astype(np.int64),
        "item": items.astype(object),
        "genres": rng.choice(["x|y", "z", ""], size=n).astype(object),
        "city": rng.choice(["paris", "rome"], size=n).astype(object),
        "age": rng.normal(30, 10, size=n).astype(np.float32),
    }
    labels = ((items == "a") | (batch["age"] > 35)).astype(np.float32)
    model = build_model("deepfm", contract, config=SMALL, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    features = {k: tf.constant(v) for k, v in batch.items()}
    first = float(model.evaluate(features, labels, verbose=0))
    # The trainer's path: a tf.data pipeline of (dict of raw rank-1 tensors, float label).
    dataset = tf.data.Dataset.from_tensor_slices((batch, labels)).batch(16).repeat(8)
    model.fit(dataset, epochs=1, verbose=0)
    last = float(model.evaluate(features, labels, verbose=0))
    assert last < 0.8 * first

"""Each custom layer: hand-computed values on a tiny input, argument checks, .keras round trip."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from training.layers import (
    CategoryEmbedding,
    CrossLayer,
    CrossNetwork,
    FMInteraction,
    LinearTerm,
    MaskedMeanPooling,
    NumericEmbedding,
    SumLogits,
)


def _round_trip(model: keras.Model, inputs, tmp_path: Path) -> None:
    """Saving and loading without custom_objects gives the same outputs and the same layer configs."""
    before = model.predict(inputs, verbose=0)
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.predict(inputs, verbose=0)
    np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    for layer in model.layers:
        assert loaded.get_layer(layer.name).get_config() == layer.get_config()


def test_category_embedding_single_and_padded_ids(tmp_path: Path) -> None:
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    layer = CategoryEmbedding(3, 2, name="emb")
    single = np.array([2, 0], dtype=np.int32)
    layer.build((None,))
    layer.set_weights([table])
    np.testing.assert_array_equal(layer(single).numpy(), [[5.0, 6.0], [1.0, 2.0]])
    padded = np.array([[1, -1], [-1, -1]], dtype=np.int32)
    np.testing.assert_array_equal(layer(padded).numpy(), [[[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(np.asarray(layer.compute_mask(padded)), [[True, False], [False, False]])
    assert layer.compute_mask(single) is None

    ids = keras.Input(shape=(2,), dtype="int32", name="ids")
    model = keras.Model(
        ids, CategoryEmbedding(3, 2, embeddings_initializer=keras.initializers.RandomUniform(seed=1))(ids)
    )
    _round_trip(model, padded, tmp_path)


def test_category_embedding_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="input_dim and output_dim must be >= 1"):
        CategoryEmbedding(0, 4)
    with pytest.raises(ValueError, match="ids must be"):
        CategoryEmbedding(3, 2).build((None, 2, 2))


def test_masked_mean_pooling_counts_only_present_positions(tmp_path: Path) -> None:
    values = np.array(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]], np.float32
    )
    mask = np.array([[True, True, False], [False, False, False]])
    pooled = MaskedMeanPooling()(values, mask=mask).numpy()
    np.testing.assert_allclose(pooled, [[2.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(
        MaskedMeanPooling()(values).numpy(), [[104 / 3, 106 / 3], [8.0, 8.0]], rtol=1e-6
    )

    ids = keras.Input(shape=(3,), dtype="int32")
    vectors = CategoryEmbedding(4, 2, embeddings_initializer=keras.initializers.RandomUniform(seed=2))(ids)
    model = keras.Model(ids, MaskedMeanPooling()(vectors))
    table = model.layers[1].get_weights()[0]
    id_batch = np.array([[1, 3, -1], [-1, -1, -1]], dtype=np.int32)
    # The Keras mask from CategoryEmbedding reaches the pooling inside a functional model.
    np.testing.assert_allclose(
        model.predict(id_batch, verbose=0), [(table[1] + table[3]) / 2, [0.0, 0.0]], rtol=1e-6
    )
    _round_trip(model, id_batch, tmp_path)


def test_masked_mean_pooling_rejects_rank_two() -> None:
    with pytest.raises(ValueError, match="expected \\[batch, length, dim\\]"):
        MaskedMeanPooling().compute_output_shape((None, 3))


def test_numeric_embedding_scales_vectors(tmp_path: Path) -> None:
    layer = NumericEmbedding(2, 2)
    layer.build((None, 2))
    layer.set_weights([np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)])
    out = layer(np.array([[2.0, -1.0]], np.float32)).numpy()
    np.testing.assert_array_equal(out, [[[2.0, 4.0], [-3.0, -4.0]]])
    x = keras.Input(shape=(2,))
    model = keras.Model(
        x, NumericEmbedding(2, 3, embeddings_initializer=keras.initializers.RandomUniform(seed=3))(x)
    )
    _round_trip(model, np.array([[0.5, 2.0]], np.float32), tmp_path)
    with pytest.raises(ValueError, match="expected \\[batch, 2\\]"):
        NumericEmbedding(2, 3).build((None, 5))
    with pytest.raises(ValueError, match="num_features and output_dim"):
        NumericEmbedding(0, 3)


def test_linear_term_sums_sparse_weights_and_dense_dot(tmp_path: Path) -> None:
    layer = LinearTerm()
    inputs = {"sparse": np.array([[0.5, 0.25]], np.float32), "dense": np.array([[2.0, 3.0]], np.float32)}
    layer.build({"sparse": (None, 2), "dense": (None, 2)})
    layer.set_weights([np.array([1.0, -1.0], np.float32), np.array(0.1, np.float32)])
    # 0.5 + 0.25 + (2*1 + 3*-1) + 0.1
    np.testing.assert_allclose(layer(inputs).numpy(), [-0.15], rtol=1e-6)
    sparse_only = LinearTerm(use_bias=False)
    np.testing.assert_allclose(sparse_only({"sparse": inputs["sparse"]}).numpy(), [0.75])

    sparse = keras.Input(shape=(2,), name="sparse")
    dense = keras.Input(shape=(2,), name="dense")
    model = keras.Model(
        {"sparse": sparse, "dense": dense},
        LinearTerm(kernel_initializer=keras.initializers.RandomUniform(seed=4))(
            {"sparse": sparse, "dense": dense}
        ),
    )
    _round_trip(model, inputs, tmp_path)


def test_linear_term_rejects_unknown_parts() -> None:
    with pytest.raises(ValueError, match="'sparse' and/or 'dense'"):
        LinearTerm().build({"wide": (None, 2)})
    with pytest.raises(TypeError, match="use_bias must be a bool"):
        LinearTerm(use_bias=1)  # type: ignore[arg-type]


def test_fm_interaction_equals_sum_of_pairwise_dot_products(tmp_path: Path) -> None:
    fields = np.array([[[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]]], np.float32)
    # <v1,v2> + <v1,v3> + <v2,v3> = 11 + 0 + (-1)
    np.testing.assert_allclose(FMInteraction()(fields).numpy(), [10.0])
    rng = np.random.default_rng(0)
    many = rng.normal(size=(3, 4, 5)).astype(np.float32)
    pairwise = [sum(many[b, i] @ many[b, j] for i in range(4) for j in range(i + 1, 4)) for b in range(3)]
    np.testing.assert_allclose(FMInteraction()(many).numpy(), pairwise, rtol=1e-5, atol=1e-5)
    x = keras.Input(shape=(4, 5))
    _round_trip(keras.Model(x, FMInteraction()(x)), many, tmp_path)
    with pytest.raises(ValueError, match="expected \\[batch, num_fields, dim\\]"):
        FMInteraction().build((None, 4))


@pytest.mark.parametrize("projection_dim", [None, 2])
def test_cross_layer_matches_numpy(projection_dim: int | None, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(3, 4)).astype(np.float32)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    layer = CrossLayer(
        projection_dim=projection_dim, kernel_initializer=keras.initializers.GlorotUniform(seed=5)
    )
    out = layer([x0, x]).numpy()
    weights = [w.numpy() for w in layer.weights]
    if projection_dim is None:
        kernel, bias = weights
    else:
        u, v, bias = weights
        assert u.shape == (4, 2) and v.shape == (2, 4)
        kernel = u @ v
    np.testing.assert_allclose(out, x0 * (x @ kernel + bias) + x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x0).numpy(), x0 * (x0 @ kernel + bias) + x0, rtol=1e-5, atol=1e-6)

    a, b = keras.Input(shape=(4,)), keras.Input(shape=(4,))
    model = keras.Model(
        [a, b],
        CrossLayer(projection_dim, kernel_initializer=keras.initializers.GlorotUniform(seed=6))([a, b]),
    )
    _round_trip(model, [x0, x], tmp_path)


def test_cross_layer_checks_arguments() -> None:
    with pytest.raises(ValueError, match="projection_dim must be None or >= 1"):
        CrossLayer(projection_dim=0)
    with pytest.raises(ValueError, match="known dim"):
        CrossLayer().build((None, 2, 3))


def test_cross_network_stacks_layers_on_x0(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(2, 3)).astype(np.float32)
    network = CrossNetwork(2, seed=7)
    out = network(x0).numpy()
    x = x0
    for layer in network.cross_layers:
        kernel, bias = (w.numpy() for w in layer.weights)
        x = x0 * (x @ kernel + bias) + x
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)
    first, second = (layer.weights[0].numpy() for layer in network.cross_layers)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(CrossNetwork(2, seed=7)(x0).numpy(), out)

    inp = keras.Input(shape=(3,))
    _round_trip(keras.Model(inp, CrossNetwork(3, projection_dim=1, l2=0.01, seed=8)(inp)), x0, tmp_path)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        CrossNetwork(0)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        CrossNetwork(1, l2=-1.0)


def test_sum_logits_flattens_and_adds(tmp_path: Path) -> None:
    out = SumLogits()([np.array([[1.0], [2.0]], np.float32), np.array([3.0, 4.0], np.float32)])
    np.testing.assert_array_equal(out.numpy(), [4.0, 6.0])
    a, b = keras.Input(shape=(1,)), keras.Input(shape=())
    _round_trip(
        keras.Model([a, b], SumLogits()([a, b])),
        [np.array([[1.0]], np.float32), np.array([2.0], np.float32)],
        tmp_path,
    )

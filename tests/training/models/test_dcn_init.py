"""DCNv2 low-rank cross layers: U and V start from their own values, reproducibly per seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tests.training.models.conftest import tiny_contract  # noqa: E402
from training.layers import CrossLayer, distinct_initializer, load_keras_model  # noqa: E402
from training.models import ModelConfig, build_model  # noqa: E402


def _kernels(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v.numpy()) for v in model.variables if "kernel_" in v.path}


def _dcn(seed: int) -> keras.Model:
    config = ModelConfig(embedding_dim=4, hidden_units=(8,), num_cross_layers=3, low_rank=2)
    return build_model("dcnv2", tiny_contract(), config=config, seed=seed)


def test_low_rank_kernels_all_start_apart_and_the_seed_reproduces_them() -> None:
    kernels = _kernels(_dcn(seed=0))
    assert len(kernels) == 6  # U and V of three layers
    flat = [np.sort(k.reshape(-1)) for k in kernels.values()]
    # sorted values: equal numbers in another shape (V = U's draws reshaped) would also match
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert not np.allclose(flat[i], flat[j]), (list(kernels)[i], list(kernels)[j])
    again = _kernels(_dcn(seed=0))
    assert all(np.array_equal(kernels[name], again[name]) for name in kernels)
    other = _kernels(_dcn(seed=1))
    assert not any(np.allclose(kernels[name], other[name]) for name in kernels)


def test_standalone_cross_layer_reseeds_v_and_keeps_it_through_a_round_trip(tmp_path: Path) -> None:
    def layer() -> CrossLayer:
        built = CrossLayer(projection_dim=3, kernel_initializer=keras.initializers.GlorotUniform(seed=5))
        built.build((None, 6))
        return built

    first, second = layer(), layer()
    u, v = first.kernel_u.numpy(), first.kernel_v.numpy()
    assert not np.allclose(np.sort(u.reshape(-1)), np.sort(v.reshape(-1)))
    np.testing.assert_array_equal(v, second.kernel_v.numpy())  # same seed, same V
    # U keeps the values the seed always gave it (what full-rank builds and old runs rely on)
    np.testing.assert_array_equal(u, keras.initializers.GlorotUniform(seed=5)((6, 3)).numpy())

    restored = CrossLayer.from_config(first.get_config())
    assert restored.kernel_v_initializer.get_config() == first.kernel_v_initializer.get_config()
    x = keras.Input(shape=(6,))
    model = keras.Model(x, first(x))
    model.save(tmp_path / "cross.keras")
    loaded = load_keras_model(tmp_path / "cross.keras")
    batch = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    np.testing.assert_allclose(loaded(batch).numpy(), model(batch).numpy(), rtol=0, atol=0)


def test_distinct_initializer_changes_seeds_only() -> None:
    seeded = keras.initializers.GlorotUniform(seed=5)
    twin = distinct_initializer(seeded)
    assert twin.get_config()["seed"] not in (5, None)
    assert distinct_initializer(seeded).get_config() == twin.get_config()  # deterministic
    zeros = keras.initializers.Zeros()
    assert distinct_initializer(zeros) is zeros

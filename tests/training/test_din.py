"""DIN: the activation unit's weights by hand, one shared item table, training, save/load, export."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.features import Feature, FeatureContract
from training.models import SEQUENCE_MODEL_NAMES, ModelConfig, build_model, split_model
from training.models.din import TargetAttention

ITEMS = ("a", "b", "c", "d")
REPO = Path(__file__).resolve().parents[2]


def _contract() -> FeatureContract:
    return FeatureContract(
        features=(
            Feature("user", "categorical_string", "user", vocabulary=("u1", "u2"), embedding_dim=4),
            Feature("item", "categorical_string", "item", vocabulary=ITEMS, embedding_dim=4),
            Feature(
                "history",
                "sequence",
                "user",
                vocabulary=ITEMS,
                max_len=3,
                item_feature="item",
                embedding_dim=4,
            ),
            Feature("price", "numeric", "item", mean=1.0, std=1.0),
        )
    )


def _batch(rows: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Label 1 when the candidate is in the history: only attention over the history can learn it."""
    rng = np.random.default_rng(seed)
    item = rng.choice(ITEMS, rows)
    history = ["|".join(rng.choice(ITEMS, int(rng.integers(0, 4)), replace=False)) for _ in range(rows)]
    label = np.array([i in h.split("|") for i, h in zip(item, history, strict=True)], dtype=np.float32)
    inputs = {
        "user": rng.choice(["u1", "u2"], rows).astype(object),
        "item": item.astype(object),
        "history": np.array(history, dtype=object),
        "price": rng.normal(1.0, 1.0, rows).astype(np.float32),
    }
    return inputs, label


def _attention(weighting: str) -> TargetAttention:
    """One-dimensional embeddings, no hidden layer, score = h * c (kernel picks the product term)."""
    layer = TargetAttention(hidden_units=(), weighting=weighting)
    layer.build([(None, 1), (None, 3, 1), (None, 3)])
    layer.score.set_weights([np.array([[0.0], [0.0], [0.0], [1.0]]), np.zeros(1)])
    return layer


@pytest.mark.parametrize(
    ("weighting", "want"),
    [
        ("none", 2 * 1 + 6 * 3),  # scores h*c = 2, 6; padding (ids -1) weighs 0
        ("softmax", (math.exp(2) * 1 + math.exp(6) * 3) / (math.exp(2) + math.exp(6))),
    ],
)
def test_activation_unit_weights_by_hand(weighting: str, want: float) -> None:
    candidate = np.array([[2.0], [2.0]], dtype=np.float32)
    history = np.array([[[1.0], [3.0], [5.0]], [[1.0], [3.0], [5.0]]], dtype=np.float32)
    ids = np.array([[0, 1, -1], [-1, -1, -1]], dtype=np.int32)
    out = np.asarray(_attention(weighting)([candidate, history, ids]))
    np.testing.assert_allclose(out[:, 0], [want, 0.0], rtol=1e-6)


def test_bad_weighting_is_refused() -> None:
    with pytest.raises(ValueError, match="weighting must be one of"):
        TargetAttention(weighting="sigmoid")


def test_din_needs_a_sequence_feature() -> None:
    plain = FeatureContract(features=(Feature("item", "categorical_string", "item", vocabulary=ITEMS),))
    assert SEQUENCE_MODEL_NAMES == ("din",)
    with pytest.raises(ValueError, match="din needs a 'sequence' feature"):
        build_model("din", plain)


def test_history_and_candidate_share_one_table_and_padding_is_ignored() -> None:
    model = build_model("din", _contract(), config=ModelConfig(hidden_units=(8,)), seed=0)
    _, core = split_model(model)
    names = {layer.name for layer in core.layers}
    assert "emb_item" in names and "emb_history" not in names
    base = {"user": np.array(["u1"], dtype=object), "item": np.array(["a"], dtype=object)}
    base["price"] = np.array([1.0], dtype=np.float32)

    def score(history: str) -> float:
        inputs = {k: tf.constant(v) for k, v in base.items()}
        return float(np.asarray(model({**inputs, "history": tf.constant([history])}))[0])

    assert score("b|c") == score("b||c|")  # empty tokens dropped, padding masked
    assert score("b|c") != score("c|d")


def test_din_trains_saves_loads_in_a_fresh_process_and_exports(tmp_path: Path) -> None:
    from export.saved_model import export_saved_model

    contract = _contract()
    model = build_model("din", contract, config=ModelConfig(hidden_units=(16,)), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    train, label = _batch(512, seed=1)
    tensors = {k: tf.constant(v) for k, v in train.items()}
    first = model.evaluate(tensors, label, verbose=0)
    model.fit(tensors, label, epochs=1, batch_size=64, verbose=0)
    assert model.evaluate(tensors, label, verbose=0) < first
    test, _ = _batch(8, seed=2)
    want = np.asarray(model.predict({k: tf.constant(v) for k, v in test.items()}, verbose=0))

    model.save(tmp_path / "din.keras")
    np.save(tmp_path / "want.npy", want)
    code = (
        "import numpy as np, tensorflow as tf, sys; from training.layers import load_keras_model; "
        f"sys.path.insert(0, {str(REPO / 'tests' / 'training')!r}); from test_din import _batch; "
        f"m = load_keras_model({str(tmp_path / 'din.keras')!r}); x, _ = _batch(8, seed=2); "
        "got = m.predict({k: tf.constant(v) for k, v in x.items()}, verbose=0); "
        f"np.testing.assert_array_equal(got, np.load({str(tmp_path / 'want.npy')!r})); print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]

    path = export_saved_model(model, contract, tmp_path / "models", "din", 1)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = serve(**{k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in test.items()})
    np.testing.assert_allclose(outputs["ctr"].numpy(), want, rtol=1e-5)

"""ONNX: the numeric core via tf2onnx + host preprocessing equals the SavedModel on 10,000 rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from export.batches import frame_inputs
from export.errors import ExportError
from export.onnx_export import OnnxScorer, check_parity, export_onnx
from export.saved_model import export_saved_model
from export.scoring import score_saved_model

ROWS = 10_000


def _fit_briefly(model, frame, contract, steps: int = 100) -> None:
    """A few hundred steps at most: parity does not need a good model, only non-trivial weights."""
    import keras
    import tensorflow as tf

    rows = min(len(frame), steps * 256)
    inputs = {k: tf.constant(v) for k, v in frame_inputs(frame.head(rows), contract).items()}
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(
        inputs, frame["label"].to_numpy()[:rows].astype(np.float32), batch_size=256, epochs=1, verbose=0
    )


def _parity(tmp_path, model, contract, frame):
    version_dir = export_saved_model(model, contract, tmp_path / "models", "ctr")
    onnx_path = export_onnx(model, contract, tmp_path / "core.onnx")
    inputs = frame_inputs(frame, contract)
    expected = score_saved_model(version_dir, contract, inputs)
    report = check_parity(OnnxScorer(onnx_path), expected, inputs)  # the contract comes from the metadata
    assert report.rows == ROWS and report.max_abs_diff <= 1e-5
    assert expected.std() > 1e-4  # the scores actually vary across rows
    return report


def test_parity_on_synthetic_model(tmp_path):
    from training.data import load_source
    from training.models import build_model

    splits = load_source("synthetic", None, num_rows=14_000, seed=0, cache_dir=str(tmp_path / "data"))
    model = build_model("dcnv2", splits.contract, seed=0)
    _fit_briefly(model, splits.train, splits.contract)
    frame = pd.concat([splits.test, splits.valid, splits.train], ignore_index=True).head(ROWS)
    report = _parity(tmp_path, model, splits.contract, frame)
    print(f"synthetic dcnv2 ONNX vs SavedModel: {report}")


def test_parity_on_movielens_model(tmp_path, movielens_dir):
    from training.data import load_source
    from training.models import build_model

    splits = load_source("movielens", movielens_dir)
    model = build_model("deepfm", splits.contract, seed=0)
    _fit_briefly(model, splits.train, splits.contract)
    frame = pd.concat([splits.test, splits.valid], ignore_index=True).head(ROWS)
    report = _parity(tmp_path, model, splits.contract, frame)
    print(f"MovieLens deepfm ONNX vs SavedModel: {report}")


def test_unseen_values_hash_identically_on_the_host(tmp_path, trained_model, contract, exported):
    """Unseen strings and ints go through Fingerprint64 OOV/hash buckets on both routes."""
    onnx_path = export_onnx(trained_model, contract, tmp_path / "core.onnx")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "user": [f"new-user-{i}" for i in range(200)],
            "item": rng.integers(1000, 10**12, 200).astype(np.int64),
            "tags": [f"t{i}|x||zz{i}" for i in range(200)],
            "price": np.where(rng.random(200) < 0.1, np.nan, rng.normal(5, 2, 200)).astype(np.float32),
            "city": [f"city-{i}" for i in range(200)],
        }
    )
    inputs = frame_inputs(frame, contract)
    expected = score_saved_model(exported, contract, inputs)
    np.testing.assert_allclose(OnnxScorer(onnx_path, contract)(inputs), expected, rtol=1e-3, atol=1e-5)


def test_string_hashing_does_not_convert():
    """The trap: TF's Fingerprint64 string hashing has no ONNX op, so the graph is cut before it.

    Without onnxruntime-extensions tf2onnx leaves the TF op in the graph (an invalid model); with
    them it maps to a custom op with a different hash (silently wrong ids). Either way the string
    preprocessing must stay on the host.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from training.features import Feature, FeatureContract
    from training.models import build_model

    hashed = FeatureContract(
        features=(
            Feature("city", "categorical_string", "context", hash_buckets=16, embedding_dim=4),
            Feature("price", "numeric", "item"),
        )
    )
    model = build_model("lr", hashed, seed=0)
    specs = {f.name: tf.TensorSpec([None], tf.dtypes.as_dtype(f.dtype), name=f.name) for f in hashed.features}

    @tf.function(input_signature=[specs])
    def full(inputs):
        return {"ctr": model(inputs)}

    proto, _ = tf2onnx.convert.from_function(full, input_signature=[specs], opset=17)
    assert "StringToHashBucketFast" in {n.op_type for n in proto.graph.node}
    with pytest.raises(Exception, match="No Op registered for StringToHashBucketFast"):
        onnx.checker.check_model(proto, full_check=True)


def test_export_onnx_errors(tmp_path, trained_model, contract):
    import keras

    target = tmp_path / "core.onnx"
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match="already exists; refusing to overwrite"):
        export_onnx(trained_model, contract, target)
    assert target.read_bytes() == b"old"
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ExportError, match="needs a zoo model with a 'core' sub-model"):
        export_onnx(plain, contract, tmp_path / "plain.onnx")
    with pytest.raises(ExportError, match="not found"):
        OnnxScorer(tmp_path / "absent.onnx", contract)

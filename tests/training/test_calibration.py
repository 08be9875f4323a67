"""Platt scaling fitted on validation after training and kept in the graph (issue 17's logloss)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402

from training.calibration import fit_platt, logit_layer  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.layers import load_keras_model  # noqa: E402
from training.train import predict_frame, train  # noqa: E402


def _config(out: Path, **overrides) -> TrainConfig:
    fixed = dict(model="deepfm", epochs=3, batch_size=256, learning_rate=3e-2, seed=3, patience=10, verbose=0)
    return TrainConfig.from_dict({"out_dir": str(out), **fixed, **overrides})


def test_fit_platt_is_scikit_learns_unregularised_logistic_regression() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(0.6 * z - 0.3)))).astype(float)
    a, b = fit_platt(z, y)
    ref = LogisticRegression(C=1e9, tol=1e-10, max_iter=1000).fit(z[:, None], y)
    assert a == pytest.approx(ref.coef_[0][0], abs=1e-4)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert abs(a - 0.6) < 0.1 and abs(b + 0.3) < 0.1  # and near the truth it was drawn from


def test_calibrated_model_keeps_its_ranking_and_lowers_validation_logloss(splits, tmp_path: Path) -> None:
    raw = train(_config(tmp_path / "raw"), splits=splits)
    cal = train(_config(tmp_path / "cal", calibrate=True), splits=splits)
    same = ("epoch", "loss", "val_auc", "val_logloss")  # calibration is after training: same epochs
    assert [{k: r[k] for k in same} for r in raw.history] == [{k: r[k] for k in same} for r in cal.history]
    c = splits.contract
    y = splits.valid[c.label].to_numpy()
    p_raw = predict_frame(load_keras_model(tmp_path / "raw" / "model.keras"), splits.valid, c, 4096)
    model = load_keras_model(tmp_path / "cal" / "model.keras")
    p_cal = predict_frame(model, splits.valid, c, 4096)
    layer = logit_layer(load_keras_model(tmp_path / "raw" / "model.keras"))
    assert (float(layer.scale.numpy()), float(layer.shift.numpy())) == (1.0, 0.0)

    # the saved layer holds scikit-learn's Platt fit on the raw model's validation logits
    z = np.log(p_raw / (1 - p_raw))
    ref = LogisticRegression(C=1e9, tol=1e-10, max_iter=1000).fit(z[:, None], y)
    fitted = logit_layer(model)
    assert float(fitted.scale.numpy()) == pytest.approx(ref.coef_[0][0], abs=2e-3)
    assert float(fitted.shift.numpy()) == pytest.approx(ref.intercept_[0], abs=2e-3)
    np.testing.assert_allclose(p_cal, ref.predict_proba(z[:, None])[:, 1], atol=1e-4)
    assert roc_auc_score(y, p_cal) == pytest.approx(roc_auc_score(y, p_raw), abs=1e-6)
    assert log_loss(y, p_cal) < log_loss(y, p_raw)
    record = json.loads((tmp_path / "cal" / "metrics.json").read_text())["calibration"]
    assert record["val_logloss_after"] == pytest.approx(log_loss(y, p_cal), abs=1e-4)

    # re-running the finished run calibrates the raw logit again: the same weights, not compounded
    train(_config(tmp_path / "cal", calibrate=True), splits=splits)
    again = logit_layer(load_keras_model(tmp_path / "cal" / "model.keras"))
    assert float(again.scale.numpy()) == pytest.approx(float(fitted.scale.numpy()), abs=1e-6)
    assert float(again.shift.numpy()) == pytest.approx(float(fitted.shift.numpy()), abs=1e-6)


def test_logit_layer_of_a_model_saved_before_calibration_loads_as_the_identity() -> None:
    from training.layers import SumLogits

    layer = SumLogits()
    layer.build((None,))
    layer.load_own_variables({})  # what a .keras file from before scale/shift holds for it
    assert (float(layer.scale.numpy()), float(layer.shift.numpy())) == (1.0, 0.0)
    layer.load_own_variables({"0": np.float32(0.5), "1": np.float32(-2.0)})  # a calibrated file
    assert (float(layer.scale.numpy()), float(layer.shift.numpy())) == (0.5, -2.0)
    out = layer([keras.ops.convert_to_tensor(np.array([1.0, 3.0], np.float32))])
    np.testing.assert_array_equal(np.asarray(out), [0.5 * 1.0 - 2.0, 0.5 * 3.0 - 2.0])

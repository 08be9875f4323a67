"""``lr`` trained with its defaults reaches the convex optimum: scikit-learn's L2 LogisticRegression.

Keras minimises ``mean(logloss) + l2 * ||w||^2`` (the L2 regulariser adds ``l2 * sum(w^2)`` of
every embedding table and the numeric kernel to the mean batch loss; the bias is not penalised).
scikit-learn minimises ``C * sum(logloss) + ||w||^2 / 2`` (lbfgs leaves the intercept alone);
divided by ``C * n`` that is ``mean(logloss) + ||w||^2 / (2 C n)``, so ``C = 1 / (2 n l2)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
sp = pytest.importorskip("scipy.sparse")

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from training.baselines import one_hot_design  # noqa: E402
from training.config import TrainConfig, model_defaults  # noqa: E402
from training.data import load_source  # noqa: E402
from training.layers import load_keras_model  # noqa: E402
from training.train import predict_frame, train  # noqa: E402

L2 = 1e-3


def _objective(labels: np.ndarray, probs: np.ndarray, squared_weights: float) -> float:
    p = np.clip(probs, 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)) + L2 * squared_weights)


def test_lr_with_its_defaults_matches_sklearn_logistic_regression(tmp_path: Path) -> None:
    splits = load_source("synthetic", None, num_rows=4000, seed=7, cache_dir=str(tmp_path / "data"))
    contract = splits.contract
    values = {**model_defaults("lr"), "epochs": 6, "patience": 6}  # run the 300 steps, no early stop
    config = TrainConfig(
        out_dir=str(tmp_path / "run"), model="lr", model_config={"l2": L2}, verbose=0, **values
    )
    train(config, splits=splits)
    state = json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())
    model = load_keras_model(tmp_path / "run" / "checkpoints" / state["weights"])

    x_train, x_test = (
        one_hot_design(model, splits.train, contract),
        one_hot_design(model, splits.test, contract),
    )
    y_train, y_test = splits.train["label"].to_numpy(), splits.test["label"].to_numpy()
    reference = LogisticRegression(C=1.0 / (2 * len(y_train) * L2), max_iter=5000, tol=1e-10)
    reference.fit(x_train, y_train)

    ours = predict_frame(model, splits.test, contract, 8192)
    theirs = reference.predict_proba(x_test)[:, 1]
    assert abs(roc_auc_score(y_test, ours) - roc_auc_score(y_test, theirs)) < 0.003
    assert np.mean(np.abs(ours - theirs)) < 0.01
    assert np.max(np.abs(ours - theirs)) < 0.03

    # the same objective at both solutions: sklearn's is the minimum, ours within 1e-4 of it
    squared = sum(float(np.sum(np.square(v))) for v in model.trainable_weights if v.path != "linear/bias")
    at_ours = _objective(y_train, predict_frame(model, splits.train, contract, 8192), squared)
    at_theirs = _objective(y_train, reference.predict_proba(x_train)[:, 1], float(np.sum(reference.coef_**2)))
    assert at_theirs - 1e-6 <= at_ours < at_theirs + 1e-4

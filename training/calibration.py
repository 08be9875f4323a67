"""Platt scaling of a trained model's logit, fitted on validation and kept in the graph.

A model that ranks well can still be over- or under-confident (on MovieLens' per-user split
DeepFM's validation logit wants a slope of ~0.8: its probabilities are too extreme), which costs
logloss and every downstream use of the probability (bids, expected clicks). Fitting
``sigmoid(a * logit + b)`` on the validation rows is a convex two-parameter logistic regression;
its ``a`` and ``b`` go into the ``logit`` layer's ``scale`` and ``shift`` (``layers.SumLogits``),
so the exported signature, batch scoring and ONNX serve the calibrated values with no extra
step. Ranking is unchanged for ``a > 0`` (AUC and GAUC equal; NDCG too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_ROWS = 100  # below this the fit is noise: calibration is skipped (train says so)
L2 = 1e-6  # keeps the fit finite when validation is separable


@dataclass(frozen=True)
class Calibration:
    """The fitted ``scale``/``shift`` and validation logloss before and after (for metrics.json)."""

    scale: float
    shift: float
    rows: int
    val_logloss_before: float
    val_logloss_after: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    # log(1 + e^z) - y z, computed stably
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def fit_platt(logits: np.ndarray, labels: np.ndarray, *, iterations: int = 50) -> tuple[float, float]:
    """``(a, b)`` minimising the logloss of ``sigmoid(a * logit + b)`` (Newton's method, float64)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if z.shape != y.shape or not len(z):
        raise ValueError(f"fit_platt: need equal, non-empty logits and labels, got {z.shape} and {y.shape}")
    design = np.stack([z, np.ones_like(z)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - y) / len(y) + L2 * w
        hess = (design * (p * (1 - p))[:, None]).T @ design / len(y) + L2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def logit_layer(model: Any) -> Any:
    """The model's ``SumLogits`` layer (inside its ``core`` sub-model)."""
    from training.models.zoo import LOGIT_LAYER, split_model

    _, core = split_model(model)
    return core.get_layer(LOGIT_LAYER)


def calibrate_model(model_path: Path, frame: Any, contract: Any, batch_size: int) -> Calibration | None:
    """Fit Platt scaling of ``model_path`` on ``frame`` (validation) and save it in place.

    Fits on the model's raw logit (``(logit - shift) / scale``), so calibrating again, e.g.
    after a resumed run, gives the same weights rather than compounding. ``None`` (nothing
    written) with fewer than ``MIN_ROWS`` rows or a single class.
    """
    from training import checkpoint as ckpt
    from training.layers import load_keras_model
    from training.models.zoo import LOGIT_LAYER, with_logit
    from training.train import predict_frame

    labels = frame[contract.label].to_numpy().astype(np.float64)
    if len(labels) < MIN_ROWS or labels.min() == labels.max():
        return None
    model = load_keras_model(model_path)
    layer = logit_layer(model)
    scale, shift = float(layer.scale.numpy()), float(layer.shift.numpy())
    heads = with_logit(model)
    logits = predict_frame(_LogitOnly(heads, LOGIT_LAYER), frame, contract, batch_size)
    raw = (logits - shift) / scale
    a, b = fit_platt(raw, labels)
    if not a > 0:  # a non-positive slope would reverse the ranking: keep the identity
        a, b = 1.0, 0.0
    layer.scale.assign(a)
    layer.shift.assign(b)
    ckpt.save_model(model, model_path)
    return Calibration(
        scale=a,
        shift=b,
        rows=len(labels),
        val_logloss_before=_logloss(labels, raw),
        val_logloss_after=_logloss(labels, a * raw + b),
    )


class _LogitOnly:
    """``predict`` returning the ``logit`` head of a two-headed model (what predict_frame calls)."""

    def __init__(self, heads: Any, name: str) -> None:
        self._heads, self._name = heads, name

    def predict(self, dataset: Any, verbose: int = 0) -> np.ndarray:
        return np.asarray(self._heads.predict(dataset, verbose=verbose)[self._name])

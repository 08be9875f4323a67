"""ROC AUC by ranks, so oracle AUCs need no scikit-learn at runtime."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import DataError


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Raises:
        DataError: if lengths differ, scores are not finite, or only one class is present.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise DataError(f"roc_auc: {y.size} labels but {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise DataError("roc_auc: scores must be finite")
    positives = int(np.sum(y == 1))
    negatives = int(np.sum(y == 0))
    if positives + negatives != y.size:
        raise DataError("roc_auc: labels must be 0 or 1")
    if positives == 0 or negatives == 0:
        raise DataError(f"roc_auc: needs both classes, got {positives} positives and {negatives} negatives")
    ranks = pd.Series(s).rank(method="average").to_numpy()
    u = ranks[y == 1].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))

"""ROC AUC for the data layer: ``training.metrics.auc`` with its errors reported as DataErrors."""

from __future__ import annotations

import numpy as np

from training.metrics import MetricError, auc

from .base import DataError


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), as ``training.metrics.auc`` computes it.

    Raises:
        DataError: if lengths differ, scores are not finite, labels are not 0/1, or only one
            class is present (data commands report DataErrors as bad input).
    """
    try:
        return auc(np.asarray(labels).ravel(), np.asarray(scores).ravel())
    except MetricError as exc:
        raise DataError(f"roc_auc: {exc}") from exc

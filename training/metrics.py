"""Offline CTR metrics in pure numpy: AUC, GAUC, logloss, calibration and top-k ranking quality.

Kept free of TensorFlow so that evaluation, reports and their tests run anywhere and so every
number can be checked against an independent implementation (scikit-learn or a hand count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

BinStrategy = Literal["uniform", "quantile"]
DEFAULT_LOGLOSS_EPS = 1e-7


class MetricError(ValueError):
    """A metric is undefined for the given input (bad shapes, values, or a single class)."""


def _labels_scores(labels: ArrayLike, scores: ArrayLike, *, what: str = "scores") -> tuple[NDArray, NDArray]:
    """Validate and convert to (int8 labels in {0,1}, float64 scores) of equal, non-zero length."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise MetricError(f"labels and {what} must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape[0] != s.shape[0]:
        raise MetricError(f"labels and {what} differ in length: {y.shape[0]} != {s.shape[0]}")
    if y.shape[0] == 0:
        raise MetricError("no rows to evaluate (empty labels)")
    bad_label = ~np.isin(y, (0, 1))
    if bad_label.any():
        row = int(np.flatnonzero(bad_label)[0])
        raise MetricError(f"labels must be 0 or 1; row {row} has {y[row].item()!r}")
    bad_score = ~np.isfinite(s)
    if bad_score.any():
        row = int(np.flatnonzero(bad_score)[0])
        raise MetricError(f"{what} must be finite; row {row} has {s[row].item()!r}")
    return y.astype(np.int8), s


def check_probabilities(labels: ArrayLike, probs: ArrayLike) -> tuple[NDArray, NDArray]:
    """Validated (labels in {0, 1}, float64 probabilities in [0, 1]) of equal, non-zero length."""
    y, p = _labels_scores(labels, probs, what="probabilities")
    outside = (p < 0.0) | (p > 1.0)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise MetricError(f"probabilities must lie in [0, 1]; row {row} has {p[row].item()!r}")
    return y, p


def _group_codes(groups: ArrayLike, n: int) -> tuple[NDArray, NDArray]:
    """Dense integer codes for group keys (user ids), plus the unique keys in code order."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n:
        raise MetricError(f"groups must be 1-D with one entry per row ({n}), got shape {g.shape}")
    keys, codes = np.unique(g, return_inverse=True)
    return codes.astype(np.int64), keys


def _sorted_runs(codes: NDArray, keys: NDArray) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray]:
    """Sort rows by (group, key) and find runs of equal (group, key): the tie groups.

    Returns ``order``, each sorted row's position within its group, its run id, and every
    run's start index and length (in sorted order).
    """
    order = np.lexsort((keys, codes))
    c, k = codes[order], keys[order]
    n = c.shape[0]
    new_group = np.r_[True, c[1:] != c[:-1]]
    new_run = new_group | np.r_[True, k[1:] != k[:-1]]
    idx = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    run_id = np.cumsum(new_run) - 1
    run_start = idx[new_run]
    run_len = np.diff(np.r_[run_start, n])
    return order, idx - group_start, run_id, run_start, run_len


def per_group_auc(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> dict[str, NDArray]:
    """AUC of every group by the rank-sum (Mann-Whitney) formula, ties given average ranks.

    Returns arrays ``group`` (unique keys), ``auc`` (NaN where a group has a single class),
    ``positives`` and ``negatives``. Vectorised: one sort for all groups.
    """
    y, s = _labels_scores(labels, scores)
    codes, keys = _group_codes(groups, y.shape[0])
    order, pos, run_id, run_start, run_len = _sorted_runs(codes, s)
    # Average 1-based rank within the group over each tie run.
    rank = (pos[run_start] + (run_len + 1) / 2.0)[run_id]
    c, ys = codes[order], y[order].astype(np.float64)
    n_groups = keys.shape[0]
    n_pos = np.bincount(c, weights=ys, minlength=n_groups)
    n_neg = np.bincount(c, minlength=n_groups) - n_pos
    rank_pos = np.bincount(c, weights=rank * ys, minlength=n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc_values = (rank_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc_values[(n_pos == 0) | (n_neg == 0)] = np.nan
    return {"group": keys, "auc": auc_values, "positives": n_pos, "negatives": n_neg}


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve; tied scores count one half (rank based, exact).

    Raises:
        MetricError: if the labels hold a single class, where AUC is undefined.
    """
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        only = 1 if n_pos else 0
        raise MetricError(f"AUC is undefined: all {y.shape[0]} labels are {only} (need both classes)")
    return float(per_group_auc(y, s, np.zeros(y.shape[0], dtype=np.int8))["auc"][0])


def gauc(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike) -> float:
    """Group AUC: per-user AUC averaged with each user's impression count as weight.

    Users whose impressions are all clicks or all non-clicks have no AUC and are skipped
    (their impressions count neither in the numerator nor in the weights).

    Raises:
        MetricError: if no group holds both classes.
    """
    per = per_group_auc(labels, scores, groups)
    defined = ~np.isnan(per["auc"])
    if not defined.any():
        raise MetricError(f"GAUC is undefined: none of the {defined.shape[0]} groups has both classes")
    weights = (per["positives"] + per["negatives"])[defined]
    return float(np.sum(per["auc"][defined] * weights) / np.sum(weights))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
    """ROC points (fpr, tpr, thresholds), one per distinct score, starting at (0, 0).

    Raises:
        MetricError: if the labels hold a single class (a rate would divide by zero).
    """
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.shape[0]:
        raise MetricError("ROC curve is undefined: labels hold a single class")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order].astype(np.float64)
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.shape[0] - 1]
    tps = np.cumsum(y_sorted)[last_of_value]
    fps = (last_of_value + 1) - tps
    fpr = np.r_[0.0, fps / (y.shape[0] - n_pos)]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last_of_value]]
    return fpr, tpr, thresholds


def logloss(labels: ArrayLike, probs: ArrayLike, *, eps: float = DEFAULT_LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[eps, 1 - eps]``.

    The clip keeps one confident mistake (p = 0 for a click) from making the mean infinite.
    """
    if not 0.0 < eps < 0.5:
        raise MetricError(f"eps must lie in (0, 0.5), got {eps}")
    y, p = check_probabilities(labels, probs)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Predicted vs observed click rate per probability bin.

    Bin ``i`` holds predictions in ``(edges[i], edges[i+1]]`` (the first bin also holds
    ``edges[0]``), the same convention as scikit-learn's ``calibration_curve``. Empty bins have
    count 0 and NaN rates. ``ece`` is the count-weighted mean of |mean predicted - observed|.
    """

    strategy: str
    edges: NDArray
    counts: NDArray
    mean_predicted: NDArray
    observed: NDArray
    ece: float
    mean_prediction: float
    observed_rate: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; NaN rates of empty bins become ``None``."""

        def clean(values: NDArray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "strategy": self.strategy,
            "edges": [float(e) for e in self.edges],
            "counts": [int(c) for c in self.counts],
            "mean_predicted": clean(self.mean_predicted),
            "observed": clean(self.observed),
            "ece": self.ece,
            "mean_prediction": self.mean_prediction,
            "observed_rate": self.observed_rate,
        }


def reliability_curve(
    labels: ArrayLike, probs: ArrayLike, *, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> ReliabilityCurve:
    """Bin predictions (equal-width on [0, 1] or by quantiles of the predictions) and compare rates.

    Quantile bins give every bin about the same number of rows, which matters for CTR models
    whose predictions crowd near zero; tied quantile edges leave some bins empty.
    """
    if n_bins < 1:
        raise MetricError(f"n_bins must be >= 1, got {n_bins}")
    y, p = check_probabilities(labels, probs)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    else:
        raise MetricError(f"unknown bin strategy {strategy!r} (use 'uniform' or 'quantile')")
    bin_ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(bin_ids, minlength=n_bins)
    pred_sum = np.bincount(bin_ids, weights=p, minlength=n_bins)
    true_sum = np.bincount(bin_ids, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_pred = np.where(counts > 0, pred_sum / counts, np.nan)
        observed = np.where(counts > 0, true_sum / counts, np.nan)
    filled = counts > 0
    ece = float(np.sum(counts[filled] * np.abs(mean_pred[filled] - observed[filled])) / y.shape[0])
    return ReliabilityCurve(
        strategy=strategy,
        edges=edges,
        counts=counts,
        mean_predicted=mean_pred,
        observed=observed,
        ece=ece,
        mean_prediction=float(p.mean()),
        observed_rate=float(y.mean()),
    )


def expected_calibration_error(
    labels: ArrayLike, probs: ArrayLike, *, n_bins: int = 10, strategy: BinStrategy = "uniform"
) -> float:
    """ECE: count-weighted mean gap between predicted and observed rate over the bins."""
    return reliability_curve(labels, probs, n_bins=n_bins, strategy=strategy).ece


@dataclass(frozen=True)
class RankingQuality:
    """Mean NDCG@k and HitRate@k over the users that have at least one positive.

    The lists ranked are each user's logged rows only (not the catalogue), so a user with ``k``
    or fewer rows and a positive has HitRate@k = 1 whatever the scores: ``short_users`` counts
    them and ``long_*`` are the means over the other users (None when there are none).
    """

    k: int
    ndcg: float
    hit_rate: float
    users: int
    users_skipped: int
    short_users: int = 0
    long_users: int = 0
    long_ndcg: float | None = None
    long_hit_rate: float | None = None


def ranking_quality(
    labels: ArrayLike, scores: ArrayLike, groups: ArrayLike, *, k: int = 10
) -> RankingQuality:
    """NDCG@k and HitRate@k over per-user lists ranked by predicted score.

    Definitions (relevance = label, binary):

    * NDCG@k: DCG@k with gain ``label`` and discount ``1 / log2(rank + 1)``, divided by the DCG@k
      of the ideal ordering (all of the user's positives first).
    * HitRate@k: 1 if the user has a positive among their top k by predicted score, else 0.

    Both are averaged over users with equal weight; users without a positive are skipped.
    Protocol: each user's list is their rows here (logged impressions), not every item; users
    with at most ``k`` rows are counted apart (``short_users``) and left out of ``long_*``.
    Tied scores are handled as the expectation over a uniformly random order among the ties
    (for NDCG the tie-averaged DCG of scikit-learn's ``ndcg_score``, for HitRate the
    hypergeometric chance that a tied positive lands in the top k), so the result never
    depends on row order.

    Raises:
        MetricError: if ``k < 1`` or no user has a positive.
    """
    if k < 1:
        raise MetricError(f"k must be >= 1, got {k}")
    y, s = _labels_scores(labels, scores)
    codes, keys = _group_codes(groups, y.shape[0])
    order, pos, run_id, run_start, run_len = _sorted_runs(codes, -s)
    n_groups = keys.shape[0]
    c, ys = codes[order], y[order].astype(np.float64)
    run_group = c[run_start]
    in_top = pos < k
    discount = np.where(in_top, 1.0 / np.log2(pos + 2.0), 0.0)
    run_pos = np.bincount(run_id, weights=ys)
    run_disc = np.bincount(run_id, weights=discount)
    dcg = np.bincount(run_group, weights=run_pos / run_len * run_disc, minlength=n_groups)
    n_pos = np.bincount(c, weights=ys, minlength=n_groups).astype(np.int64)
    ideal_prefix = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))]
    idcg = ideal_prefix[np.minimum(n_pos, k)]
    has_pos = n_pos > 0
    if not has_pos.any():
        raise MetricError(f"NDCG/HitRate are undefined: none of the {n_groups} users has a positive")

    # HitRate: a run entirely inside the top k with a positive is a sure hit; a run cut by the
    # k-th position (at most one per user) hits with the chance that one of its p positives
    # takes one of its s top-k slots among its m rows: 1 - C(m - p, s) / C(m, s).
    run_slots = np.bincount(run_id, weights=in_top.astype(np.float64)).astype(np.int64)
    sure = np.bincount(run_group, weights=(run_slots == run_len) & (run_pos > 0), minlength=n_groups) > 0
    miss = np.ones(n_groups)
    for r in np.flatnonzero((run_slots > 0) & (run_slots < run_len) & (run_pos > 0)):
        m, p, slots = int(run_len[r]), int(run_pos[r]), int(run_slots[r])
        miss[run_group[r]] = float(np.prod([(m - p - j) / (m - j) for j in range(slots)]))
    hits = np.where(sure, 1.0, 1.0 - miss)
    ndcg = np.zeros(n_groups)
    ndcg[has_pos] = dcg[has_pos] / idcg[has_pos]
    long = has_pos & (np.bincount(c, minlength=n_groups) > k)
    return RankingQuality(
        k=k,
        ndcg=float(np.mean(ndcg[has_pos])),
        hit_rate=float(np.mean(hits[has_pos])),
        users=int(has_pos.sum()),
        users_skipped=int((~has_pos).sum()),
        short_users=int((has_pos & ~long).sum()),
        long_users=int(long.sum()),
        long_ndcg=float(np.mean(ndcg[long])) if long.any() else None,
        long_hit_rate=float(np.mean(hits[long])) if long.any() else None,
    )


def ndcg_at_k(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike, *, k: int = 10) -> float:
    """Mean per-user NDCG@k (see :func:`ranking_quality` for the definition)."""
    return ranking_quality(labels, scores, groups, k=k).ndcg


def hit_rate_at_k(labels: ArrayLike, scores: ArrayLike, groups: ArrayLike, *, k: int = 10) -> float:
    """Share of users with a positive who have one in their top k (see :func:`ranking_quality`)."""
    return ranking_quality(labels, scores, groups, k=k).hit_rate


def new_mask(values: ArrayLike, seen: ArrayLike) -> NDArray:
    """True where a value (user or item id) never appears in ``seen`` (the training split)."""
    return ~np.isin(np.asarray(values), np.unique(np.asarray(seen)))

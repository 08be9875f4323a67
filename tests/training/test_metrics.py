"""Metrics checked against scikit-learn, brute force over orderings, and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, ndcg_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from training import metrics as m


def _random_case(seed: int, n: int = 600, users: int = 40, decimals: int = 1):
    """Labels, heavily tied scores (rounded) and user ids."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.25), 0, 1), decimals)
    groups = rng.integers(0, users, n)
    return labels, scores, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_many_ties(seed: int) -> None:
    labels, scores, _ = _random_case(seed)
    assert len(np.unique(scores)) < 15  # the case really is tie-heavy
    assert m.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_hand_computed_tie_counts_half() -> None:
    # Pairs (pos, neg): (0.5, 0.1) win, (0.5, 0.5) tie, (0.9, 0.1) win, (0.9, 0.5) win -> 3.5 / 4.
    assert m.auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    assert m.auc([0, 1], [0.3, 0.3]) == pytest.approx(0.5)
    assert m.auc([1, 0], [0.9, 0.1]) == pytest.approx(1.0)
    assert m.auc([1, 0], [0.1, 0.9]) == pytest.approx(0.0)


def test_auc_is_invariant_to_row_order() -> None:
    labels, scores, _ = _random_case(3)
    perm = np.random.default_rng(9).permutation(labels.shape[0])
    assert m.auc(labels[perm], scores[perm]) == pytest.approx(m.auc(labels, scores), abs=1e-12)


def test_auc_errors_name_the_problem() -> None:
    with pytest.raises(m.MetricError, match="all 4 labels are 1"):
        m.auc([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(m.MetricError, match="all 2 labels are 0"):
        m.auc([0, 0], [0.1, 0.2])
    with pytest.raises(m.MetricError, match="row 2 has 2"):
        m.auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(m.MetricError, match="row 1 has nan"):
        m.auc([0, 1], [0.1, float("nan")])
    with pytest.raises(m.MetricError, match="differ in length: 2 != 3"):
        m.auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(m.MetricError, match="empty"):
        m.auc([], [])


def test_gauc_hand_computed_weights_and_skips_single_class_users() -> None:
    users = ["a", "a", "b", "b", "b", "b", "c", "c", "c"]
    labels = [1, 0, 1, 0, 0, 0, 0, 0, 0]
    scores = [0.9, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    # a: AUC 1 over 2 impressions; b: AUC 0 over 4; c has no click and is skipped.
    assert m.gauc(labels, scores, users) == pytest.approx((1 * 2 + 0 * 4) / 6)
    per = m.per_group_auc(labels, scores, users)
    assert list(per["group"]) == ["a", "b", "c"]
    assert np.isnan(per["auc"][2]) and per["negatives"][2] == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_gauc_matches_weighted_per_user_sklearn(seed: int) -> None:
    labels, scores, groups = _random_case(seed, n=800, users=60)
    aucs, weights = [], []
    for user in np.unique(groups):
        mask = groups == user
        if len(np.unique(labels[mask])) == 2:
            aucs.append(roc_auc_score(labels[mask], scores[mask]))
            weights.append(mask.sum())
    assert m.gauc(labels, scores, groups) == pytest.approx(np.average(aucs, weights=weights), abs=1e-12)


def test_gauc_without_any_two_class_user_raises() -> None:
    with pytest.raises(m.MetricError, match="none of the 2 groups has both classes"):
        m.gauc([1, 1, 0], [0.1, 0.2, 0.3], [7, 7, 8])
    with pytest.raises(m.MetricError, match="one entry per row"):
        m.gauc([1, 0], [0.1, 0.2], [1, 2, 3])


def test_roc_curve_matches_sklearn() -> None:
    labels, scores, _ = _random_case(4)
    fpr, tpr, thresholds = m.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thr[1:])
    # The trapezoid area under the tie-aware curve is the rank AUC.
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.auc(labels, scores))
    with pytest.raises(m.MetricError, match="single class"):
        m.roc_curve([0, 0], [0.2, 0.4])


def test_logloss_matches_sklearn_and_clips() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 500)
    probs = rng.uniform(0.01, 0.99, 500)
    assert m.logloss(labels, probs) == pytest.approx(log_loss(labels, probs), abs=1e-12)
    # Hand: a click predicted at exactly 0 costs -log(1e-7); a non-click at 0.2 costs -log(0.8).
    assert m.logloss([1, 0], [0.0, 0.2]) == pytest.approx((-math.log(1e-7) - math.log(0.8)) / 2)
    assert m.logloss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3))
    with pytest.raises(m.MetricError, match=r"must lie in \[0, 1\]; row 1 has 1.5"):
        m.logloss([0, 1], [0.5, 1.5])
    with pytest.raises(m.MetricError, match="eps"):
        m.logloss([0, 1], [0.5, 0.5], eps=0.0)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_curve_matches_sklearn(strategy: str) -> None:
    rng = np.random.default_rng(6)
    probs = rng.beta(1.5, 8.0, 2000)
    labels = (rng.random(2000) < probs * 1.3).astype(int)
    curve = m.reliability_curve(labels, probs, n_bins=8, strategy=strategy)
    sk_true, sk_pred = calibration_curve(labels, probs, n_bins=8, strategy=strategy)
    filled = curve.counts > 0
    np.testing.assert_allclose(curve.observed[filled], sk_true)
    np.testing.assert_allclose(curve.mean_predicted[filled], sk_pred)
    assert curve.counts.sum() == 2000
    expected_ece = np.sum(curve.counts[filled] * np.abs(sk_pred - sk_true)) / 2000
    assert curve.ece == pytest.approx(expected_ece)
    assert curve.mean_prediction == pytest.approx(probs.mean())
    assert curve.observed_rate == pytest.approx(labels.mean())
    if strategy == "quantile":
        assert curve.counts.min() >= 240  # about 2000 / 8 per bin


def test_ece_hand_computed_and_edge_convention() -> None:
    # Two equal-width bins: [0, 0.5] holds 0.1, 0.1 and 0.5 (edges go to the lower bin).
    curve = m.reliability_curve([0, 1, 1, 1, 0], [0.1, 0.1, 0.9, 0.9, 0.5], n_bins=2)
    assert list(curve.counts) == [3, 2]
    np.testing.assert_allclose(curve.mean_predicted, [0.7 / 3, 0.9])
    np.testing.assert_allclose(curve.observed, [1 / 3, 1.0])
    assert curve.ece == pytest.approx((3 * abs(0.7 / 3 - 1 / 3) + 2 * 0.1) / 5)
    empty = m.reliability_curve([0, 1], [0.05, 0.07], n_bins=4)
    assert list(empty.counts) == [2, 0, 0, 0] and np.isnan(empty.observed[1])
    assert empty.to_dict()["observed"] == [0.5, None, None, None]
    with pytest.raises(m.MetricError, match="unknown bin strategy 'log'"):
        m.reliability_curve([0, 1], [0.1, 0.2], strategy="log")  # type: ignore[arg-type]
    with pytest.raises(m.MetricError, match="n_bins must be >= 1"):
        m.expected_calibration_error([0, 1], [0.1, 0.2], n_bins=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ndcg_matches_sklearn_per_user_with_ties(seed: int) -> None:
    labels, scores, groups = _random_case(seed, n=900, users=30)
    expected = [
        ndcg_score(labels[groups == u][None, :], scores[groups == u][None, :], k=10)
        for u in np.unique(groups)
        if labels[groups == u].sum() > 0
    ]
    quality = m.ranking_quality(labels, scores, groups, k=10)
    assert quality.ndcg == pytest.approx(np.mean(expected), abs=1e-12)
    assert quality.users == len(expected)


def test_hit_rate_matches_brute_force_without_ties() -> None:
    rng = np.random.default_rng(7)
    labels = (rng.random(1500) < 0.05).astype(int)
    scores = rng.permutation(1500) / 1500.0  # all distinct
    groups = rng.integers(0, 50, 1500)
    hits = []
    for user in np.unique(groups):
        mask = groups == user
        if labels[mask].sum() == 0:
            continue
        top = np.argsort(-scores[mask])[:10]
        hits.append(float(labels[mask][top].any()))
    quality = m.ranking_quality(labels, scores, groups, k=10)
    assert quality.hit_rate == pytest.approx(np.mean(hits))
    assert quality.users + quality.users_skipped == 50
    assert m.hit_rate_at_k(labels, scores, groups) == quality.hit_rate


def _expected_over_orderings(labels: list[int], scores: list[float], k: int) -> tuple[float, float]:
    """(HitRate@k, NDCG@k) averaged over every order consistent with the scores (ties permuted)."""
    hits, ndcgs = [], []
    ideal = sum(1 / math.log2(i + 2) for i in range(min(sum(labels), k)))
    for perm in itertools.permutations(range(len(labels))):
        ranked = sorted(perm, key=lambda i: -scores[i])  # stable: ties keep the permuted order
        top = [labels[i] for i in ranked[:k]]
        hits.append(float(any(top)))
        ndcgs.append(sum(g / math.log2(r + 2) for r, g in enumerate(top)) / ideal)
    return float(np.mean(hits)), float(np.mean(ndcgs))


@pytest.mark.parametrize(
    ("labels", "scores", "k"),
    [
        ([1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], 2),  # one click among 4 tied: hit 1/2
        ([1, 1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5, 0.2], 2),  # tie straddles the cut
        ([0, 1, 0, 1, 0, 0], [0.9, 0.4, 0.4, 0.4, 0.4, 0.1], 3),  # a sure miss above, then ties
        ([1, 0, 0, 0, 0], [0.9, 0.4, 0.4, 0.4, 0.4], 1),  # sure hit above the ties
    ],
)
def test_ranking_with_ties_equals_expectation_over_orderings(labels, scores, k) -> None:
    hit, ndcg = _expected_over_orderings(labels, scores, k)
    quality = m.ranking_quality(labels, scores, [0] * len(labels), k=k)
    assert quality.hit_rate == pytest.approx(hit)
    assert quality.ndcg == pytest.approx(ndcg)


def test_ranking_hand_computed_and_skips_users_without_positives() -> None:
    # User 1: the click is ranked second -> NDCG 1/log2(3), hit. User 2: no click, skipped.
    # User 3: the click is 3rd of 3 with k=2 -> NDCG 0, miss.
    users = [1, 1, 1, 2, 2, 3, 3, 3]
    labels = [0, 1, 0, 0, 0, 0, 0, 1]
    scores = [0.9, 0.8, 0.1, 0.5, 0.6, 0.9, 0.8, 0.7]
    quality = m.ranking_quality(labels, scores, users, k=2)
    assert quality.ndcg == pytest.approx((1 / math.log2(3) + 0.0) / 2)
    assert quality.hit_rate == pytest.approx(0.5)
    assert (quality.users, quality.users_skipped) == (2, 1)
    assert m.ndcg_at_k(labels, scores, users, k=10) == pytest.approx((1 / math.log2(3) + 0.5) / 2)
    with pytest.raises(m.MetricError, match="none of the 2 users has a positive"):
        m.ranking_quality([0, 0], [0.1, 0.2], [1, 2])
    with pytest.raises(m.MetricError, match="k must be >= 1"):
        m.ranking_quality([1], [0.1], [1], k=0)


def test_new_mask_marks_ids_absent_from_training() -> None:
    assert list(m.new_mask([3, 1, 5, 1], [1, 2, 3, 3])) == [False, False, True, False]
    assert list(m.new_mask(["u9", "u1"], ["u1"])) == [True, False]


def test_metrics_module_does_not_import_tensorflow() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(m.__file__).read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "dataclasses", "typing", "numpy"}

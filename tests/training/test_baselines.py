"""Target statistics without leakage, and the LightGBM reference row on real (synthetic) splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.baselines import fit_gbdt, fold_ids, out_of_fold_encode, target_encode

KEYS = np.array(["a", "a", "b", "b", "a", "b"])
LABELS = np.array([1, 0, 1, 1, 0, 0])
FOLDS = np.array([0, 1, 0, 1, 0, 1])


def test_out_of_fold_encoding_by_hand() -> None:
    # fold 0 (rows 0, 2, 4) from fold 1's rows a:0, b:1, b:0, prior 1/3, smoothing 2:
    #   a (0 + 2/3) / (1 + 2) = 2/9, b (1 + 2/3) / (2 + 2) = 5/12
    # fold 1 (rows 1, 3, 5) from fold 0's rows a:1, b:1, a:0, prior 2/3:
    #   a (1 + 4/3) / (2 + 2) = 7/12, b (1 + 4/3) / (1 + 2) = 7/9
    encoded = out_of_fold_encode(KEYS, LABELS, FOLDS, smoothing=2.0)
    np.testing.assert_allclose(encoded, [2 / 9, 7 / 12, 5 / 12, 7 / 9, 2 / 9, 7 / 9])


def test_no_row_sees_its_own_label() -> None:
    before = out_of_fold_encode(KEYS, LABELS, FOLDS, smoothing=2.0)
    for row in range(len(KEYS)):
        flipped = LABELS.copy()
        flipped[row] = 1 - flipped[row]
        after = out_of_fold_encode(KEYS, flipped, FOLDS, smoothing=2.0)
        same_fold = FOLDS == FOLDS[row]
        np.testing.assert_array_equal(after[same_fold], before[same_fold])
        assert not np.allclose(after[~same_fold], before[~same_fold])


def test_full_train_encoding_and_unseen_keys() -> None:
    # all six rows: a 1/3 clicks, b 2/3, prior 1/2; smoothing 3: a (1 + 1.5) / 6, b (2 + 1.5) / 6
    encoded = target_encode(KEYS, LABELS, np.array(["b", "a", "zzz"]), smoothing=3.0)
    np.testing.assert_allclose(encoded, [3.5 / 6, 2.5 / 6, 0.5])
    np.testing.assert_allclose(target_encode(KEYS, LABELS, np.array(["a"]), smoothing=0.0), [1 / 3])


def test_fold_ids_are_balanced_and_seeded() -> None:
    folds = fold_ids(10, 3, np.random.default_rng(0))
    assert sorted(np.bincount(folds)) == [3, 3, 4]
    np.testing.assert_array_equal(folds, fold_ids(10, 3, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="folds"):
        fold_ids(10, 1, np.random.default_rng(0))


def test_gbdt_learns_a_synthetic_split(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    from sklearn.metrics import roc_auc_score

    from training.data import load_source

    splits = load_source("synthetic", None, num_rows=6000, seed=3, cache_dir=str(tmp_path / "data"))
    scores = fit_gbdt(splits, seed=0, num_threads=1)
    assert scores.test.shape == (len(splits.test),) and scores.valid.shape == (len(splits.valid),)
    assert np.all((scores.test > 0) & (scores.test < 1))
    test_auc = roc_auc_score(splits.test["label"], scores.test)
    oracle_auc = roc_auc_score(splits.test["label"], splits.test["p_true"])
    # 0.62 against the oracle's 0.78 here: the synthetic labels have user x item interactions that
    # per-feature statistics cannot express; the bound only says the trees learnt (600 test rows)
    assert 0.57 < test_auc <= oracle_auc + 0.02
    assert any(name.endswith("_te") for name in scores.info["features"])

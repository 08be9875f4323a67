"""Reference models the zoo is compared against: LightGBM on target statistics, scikit-learn's LR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from training.data.base import Splits
from training.features import Feature, FeatureContract, FeatureKind

# Default LightGBM settings: a practitioner's first try (shallow-ish trees, shrinkage 0.05,
# row/column subsampling), early-stopped on the validation split's logloss.
GBDT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
}
MAX_ROUNDS, EARLY_STOPPING_ROUNDS = 2000, 50


def fold_ids(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number in ``[0, folds)`` per row, balanced, in a random order drawn from ``rng``."""
    if folds < 2 or n < folds:
        raise ValueError(f"need 2 <= folds <= rows, got folds={folds}, rows={n}")
    return rng.permutation(n) % folds


def target_encode(
    keys: np.ndarray, labels: np.ndarray, apply_to: np.ndarray, smoothing: float, prior: float | None = None
) -> np.ndarray:
    """Smoothed click rate of each key of ``apply_to``, from the rows ``keys``/``labels``.

    ``(clicks + smoothing * prior) / (rows + smoothing)``: a key seen a few times stays near the
    prior (default: the mean of ``labels``) instead of at 0 or 1, and an unseen key gets the prior.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    labels = np.asarray(labels, dtype=np.float64)
    prior = float(labels.mean()) if prior is None else prior
    stats = pd.DataFrame({"key": keys, "y": labels}).groupby("key", sort=False)["y"].agg(["sum", "count"])
    wanted = pd.Series(apply_to)
    clicks = wanted.map(stats["sum"]).fillna(0.0).to_numpy(dtype=np.float64)
    rows = wanted.map(stats["count"]).fillna(0.0).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        encoded = (clicks + smoothing * prior) / (rows + smoothing)
    return np.where(rows + smoothing > 0, encoded, prior)


def out_of_fold_encode(
    keys: np.ndarray, labels: np.ndarray, folds: np.ndarray, smoothing: float
) -> np.ndarray:
    """Target encoding of training rows where each fold is encoded from the other folds only.

    A row's own label (and its fold's) never enters its value, prior included (the prior is the
    other folds' click rate), so the trees cannot learn the label back from the encoding.
    """
    labels = np.asarray(labels, dtype=np.float64)
    encoded = np.empty(len(keys), dtype=np.float64)
    for fold in np.unique(folds):
        inside = folds == fold
        encoded[inside] = target_encode(keys[~inside], labels[~inside], keys[inside], smoothing)
    return encoded


def _multi_hot(feature: Feature, column: pd.Series) -> dict[str, np.ndarray]:
    """One 0/1 column per vocabulary token of a ``|``-joined multi-valued feature."""
    tokens = [str(v) for v in feature.vocabulary or ()]
    split = column.astype(str).str.split("|")
    return {
        f"{feature.name}={t}": split.map(lambda values, t=t: t in values).to_numpy(np.float32) for t in tokens
    }


def gbdt_features(
    splits: Splits, folds: np.ndarray, smoothing: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train/valid/test design for the trees from the contract's features, statistics from train.

    Categorical features: out-of-fold target encoding on train, full-train encoding on
    valid/test, plus the key's train frequency (label-free). Multi-valued features: multi-hot
    over the train vocabulary. Numeric features: raw values (the trees need no scaling). Sequence
    features (recent item ids) are left out: a whole history is almost unique per row.
    """
    train, labels = splits.train, splits.train[splits.contract.label].to_numpy()
    frames: tuple[dict[str, np.ndarray], ...] = ({}, {}, {})
    for feature in splits.contract.features:
        if feature.kind.value == "sequence":  # a history of ids: no statistic of the whole list
            continue
        parts = (train[feature.name], splits.valid[feature.name], splits.test[feature.name])
        if feature.kind is FeatureKind.NUMERIC:
            for out, part in zip(frames, parts, strict=True):
                out[feature.name] = part.to_numpy(dtype=np.float32)
        elif feature.kind is FeatureKind.MULTI_CATEGORICAL:
            for out, part in zip(frames, parts, strict=True):
                out.update(_multi_hot(feature, part))
        else:
            keys = parts[0].to_numpy()
            frames[0][f"{feature.name}_te"] = out_of_fold_encode(keys, labels, folds, smoothing)
            counts = parts[0].value_counts()
            for index, (out, part) in enumerate(zip(frames, parts, strict=True)):
                if index:
                    out[f"{feature.name}_te"] = target_encode(keys, labels, part.to_numpy(), smoothing)
                out[f"{feature.name}_count"] = part.map(counts).fillna(0).to_numpy(dtype=np.float32)
    train_x, valid_x, test_x = (pd.DataFrame(f) for f in frames)
    return train_x, valid_x, test_x


@dataclass(frozen=True)
class BaselineScores:
    """Click probabilities of a reference model on the validation and test splits."""

    valid: np.ndarray
    test: np.ndarray
    info: dict[str, Any]


def fit_gbdt(
    splits: Splits,
    seed: int,
    *,
    folds: int = 5,
    smoothing: float = 20.0,
    num_threads: int = 2,
    params: dict[str, Any] | None = None,
) -> BaselineScores:
    """LightGBM on ``gbdt_features``, early-stopped on the validation split's logloss."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    train_x, valid_x, test_x = gbdt_features(splits, fold_ids(len(splits.train), folds, rng), smoothing)
    label = splits.contract.label
    settings = {**GBDT_PARAMS, **(params or {}), "seed": seed, "num_threads": num_threads}
    train_set = lgb.Dataset(train_x, splits.train[label].to_numpy())
    valid_set = lgb.Dataset(valid_x, splits.valid[label].to_numpy(), reference=train_set)
    booster = lgb.train(
        settings,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return BaselineScores(
        valid=booster.predict(valid_x, num_iteration=best),
        test=booster.predict(test_x, num_iteration=best),
        info={"best_iteration": best, "features": list(train_x.columns)},
    )


def one_hot_design(model: Any, frame: pd.DataFrame, contract: FeatureContract) -> Any:
    """The sparse matrix ``lr`` sees: one-hot ids, multi-hot weighted 1/tokens (mean pooling),
    normalised numerics, taken from the model's own preprocessing so both solvers get one input."""
    import scipy.sparse as sp

    from training.data import make_tf_dataset
    from training.models import split_model

    preprocess, _ = split_model(model)
    inputs = next(iter(make_tf_dataset(frame, contract, len(frame)).map(lambda x, y: x)))
    ids = preprocess(inputs)
    n, blocks = len(frame), []
    for feature in contract.features:
        values = np.asarray(ids[feature.name])
        if feature.kind is FeatureKind.NUMERIC:
            blocks.append(sp.csr_matrix(values.reshape(n, 1).astype(np.float64)))
            continue
        if values.ndim == 1:
            values = values.reshape(n, 1)
        present = values >= 0
        rows, slots = np.nonzero(present)
        weights = 1.0 / present.sum(axis=1)[rows]
        shape = (n, feature.num_buckets)
        blocks.append(sp.csr_matrix((weights, (rows, values[rows, slots])), shape=shape))
    return sp.hstack(blocks).tocsr()


def fit_sklearn_lr(model: Any, splits: Splits, l2: float) -> BaselineScores:
    """scikit-learn's L2 LogisticRegression on ``one_hot_design``, the convex optimum ``lr`` aims at.

    Keras minimises ``mean(logloss) + l2 * ||w||^2``; scikit-learn ``C * sum(logloss) + ||w||^2 / 2``,
    the same objective for ``C = 1 / (2 n l2)``.
    """
    from sklearn.linear_model import LogisticRegression

    contract = splits.contract
    x_train = one_hot_design(model, splits.train, contract)
    reference = LogisticRegression(C=1.0 / (2 * x_train.shape[0] * l2), max_iter=5000, tol=1e-8)
    reference.fit(x_train, splits.train[contract.label].to_numpy())
    return BaselineScores(
        valid=reference.predict_proba(one_hot_design(model, splits.valid, contract))[:, 1],
        test=reference.predict_proba(one_hot_design(model, splits.test, contract))[:, 1],
        info={"C": reference.C, "iterations": int(np.max(reference.n_iter_))},
    )

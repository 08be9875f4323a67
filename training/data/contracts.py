"""Build contract features from a training frame: vocabularies, hash buckets and numeric stats."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.features import (
    MULTI_VALUE_SEPARATOR,
    NUMERIC_TRANSFORMS,
    Entity,
    Feature,
    FeatureContract,
    FeatureKind,
)

from .base import DataError


def _ranked_values(counts: pd.Series, min_count: int) -> list:
    """Values with at least ``min_count`` occurrences, most frequent first, ties by value.

    Ordering by frequency keeps ids stable and readable; the tie-break makes it deterministic.
    """
    kept = counts[counts >= min_count]
    order = sorted(kept.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    return [value for value, _ in order]


def categorical_feature(
    name: str,
    values: pd.Series,
    entity: Entity | str,
    *,
    min_count: int = 1,
    max_vocab: int = 100_000,
    hash_buckets: int | None = None,
    num_oov: int = 1,
    embedding_dim: int = 8,
) -> Feature:
    """A categorical_string or categorical_int feature from training values.

    Uses a vocabulary (values seen at least ``min_count`` times, ``num_oov`` >= 1 OOV buckets)
    unless the kept vocabulary would exceed ``max_vocab``; then ``hash_buckets`` (default: the
    next power of two above twice the distinct count, capped at 2**20) so huge id spaces stay
    bounded. Empty strings are missing values and never enter the vocabulary.
    """
    if pd.api.types.is_integer_dtype(values.dtype):
        kind = FeatureKind.CATEGORICAL_INT
        counts = values.value_counts()
        counts.index = counts.index.astype(np.int64)
        convert = int
    else:
        kind = FeatureKind.CATEGORICAL_STRING
        counts = values.astype(str).value_counts()
        counts = counts[counts.index != ""]
        convert = str
    if counts.empty:
        raise DataError(f"feature {name!r}: no non-missing training values to build a vocabulary from")
    vocab = _ranked_values(counts, min_count)
    if hash_buckets is None and len(vocab) <= max_vocab:
        return Feature(
            name=name,
            kind=kind,
            entity=Entity(entity),
            vocabulary=tuple(convert(v) for v in vocab),
            num_oov=num_oov,
            embedding_dim=embedding_dim,
        )
    buckets = hash_buckets or min(2 ** math.ceil(math.log2(2 * len(counts))), 2**20)
    return Feature(
        name=name, kind=kind, entity=Entity(entity), hash_buckets=buckets, embedding_dim=embedding_dim
    )


def multi_categorical_feature(
    name: str,
    values: pd.Series,
    entity: Entity | str,
    *,
    min_count: int = 1,
    max_len: int | None = None,
    num_oov: int = 1,
    embedding_dim: int = 8,
) -> Feature:
    """A multi_categorical feature: tokens split on ``|`` counted over training rows.

    ``max_len`` defaults to the largest number of tokens seen in one training row.
    """
    tokens = values.astype(str).str.split(MULTI_VALUE_SEPARATOR, regex=False).explode()
    tokens = tokens[tokens.notna() & (tokens != "")]
    if tokens.empty:
        raise DataError(f"feature {name!r}: no non-empty training tokens to build a vocabulary from")
    longest = int(values.astype(str).map(lambda s: sum(1 for t in s.split(MULTI_VALUE_SEPARATOR) if t)).max())
    return Feature(
        name=name,
        kind=FeatureKind.MULTI_CATEGORICAL,
        entity=Entity(entity),
        vocabulary=tuple(str(v) for v in _ranked_values(tokens.value_counts(), min_count)),
        num_oov=num_oov,
        embedding_dim=embedding_dim,
        max_len=max_len or max(longest, 1),
    )


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): the ``log1p`` numeric transform (tames heavy-tailed values)."""
    return np.sign(values) * np.log1p(np.abs(values))


def numeric_feature(
    name: str, values: pd.Series, entity: Entity | str, *, transform: str = "none"
) -> Feature:
    """A numeric feature normalised with the training mean and std (finite values only).

    With ``transform="log1p"`` the graph normalises ``signed_log1p(x)``, so the statistics are
    those of the transformed float32 values; the default (what a client sends for a missing
    value) stays raw: ``sign(mean) * expm1(|mean|)``, whose transform is the mean. A constant
    column gets std 1 so normalisation stays finite.
    """
    if transform not in NUMERIC_TRANSFORMS:
        raise DataError(
            f"feature {name!r}: transform must be one of {list(NUMERIC_TRANSFORMS)}, got {transform!r}"
        )
    data = np.asarray(values, dtype=np.float64)
    if transform == "log1p":  # of the float32 values the graph will see
        data = signed_log1p(data.astype(np.float32).astype(np.float64))
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise DataError(f"feature {name!r}: no finite training values to compute mean/std from")
    mean = float(data.mean())
    std = float(data.std())
    if not std > 1e-12:
        std = 1.0
    return Feature(
        name=name, kind=FeatureKind.NUMERIC, entity=Entity(entity), mean=mean, std=std, transform=transform
    )


@dataclass(frozen=True)
class FeatureRecipe:
    """How to build one contract feature from the training split (a data set's declaration).

    ``kind`` is ``categorical`` (string or int, from the column's dtype), ``multi_categorical``
    (``|``-joined tokens), ``numeric`` or ``sequence`` (``item_feature``'s values, ``max_len``). Only training rows are ever counted, so validation and
    test values the model never saw map to the OOV bucket exactly as they will when served.
    """

    name: str
    kind: str
    entity: Entity | str
    min_count: int = 1
    max_vocab: int = 100_000
    hash_buckets: int | None = None
    num_oov: int = 1
    embedding_dim: int = 8
    transform: str = "none"
    max_len: int | None = None
    item_feature: str | None = None


def sequence_feature(name: str, item: Feature, entity: Entity | str, *, max_len: int) -> Feature:
    """A ``sequence`` of ``item``'s values: its vocabulary (as strings), buckets and dim, shared.

    The history gets no vocabulary of its own: it must map ids exactly like the candidate so
    DIN can look both up in one table (``FeatureContract`` checks this).
    """
    if item.kind not in (FeatureKind.CATEGORICAL_STRING, FeatureKind.CATEGORICAL_INT):
        raise DataError(f"feature {name!r}: item_feature {item.name!r} is not single-valued categorical")
    vocabulary = None if item.vocabulary is None else tuple(str(v) for v in item.vocabulary)
    return Feature(
        name=name,
        kind=FeatureKind.SEQUENCE,
        entity=Entity(entity),
        vocabulary=vocabulary,
        hash_buckets=item.hash_buckets,
        num_oov=item.num_oov,
        embedding_dim=item.embedding_dim,
        max_len=max_len,
        item_feature=item.name,
    )


def feature_from_recipe(recipe: FeatureRecipe, train: pd.DataFrame) -> Feature:
    """The contract feature ``recipe`` declares, from the training rows of its column."""
    if recipe.name not in train.columns:
        raise DataError(f"feature {recipe.name!r}: no such column in the training rows")
    values = train[recipe.name]
    if recipe.kind == "numeric":
        return numeric_feature(recipe.name, values, recipe.entity, transform=recipe.transform)
    shared = {"min_count": recipe.min_count, "num_oov": recipe.num_oov, "embedding_dim": recipe.embedding_dim}
    if recipe.kind == "multi_categorical":
        return multi_categorical_feature(recipe.name, values, recipe.entity, max_len=recipe.max_len, **shared)
    if recipe.kind == "categorical":
        return categorical_feature(
            recipe.name,
            values,
            recipe.entity,
            max_vocab=recipe.max_vocab,
            hash_buckets=recipe.hash_buckets,
            **shared,  # type: ignore[arg-type]
        )
    raise DataError(f"feature {recipe.name!r}: unknown kind {recipe.kind!r}")


def contract_from_recipes(
    train: pd.DataFrame,
    recipes: Sequence[FeatureRecipe],
    *,
    source: str,
    label: str = "label",
    metadata: Sequence[tuple[str, str]] = (),
) -> FeatureContract:
    """The feature contract of ``recipes``, every vocabulary and statistic from ``train`` only."""
    built = {r.name: feature_from_recipe(r, train) for r in recipes if r.kind != "sequence"}
    for recipe in recipes:
        if recipe.kind == "sequence":
            if recipe.item_feature not in built or not recipe.max_len:
                raise DataError(
                    f"feature {recipe.name!r}: a sequence needs an item_feature recipe and max_len"
                )
            built[recipe.name] = sequence_feature(
                recipe.name, built[recipe.item_feature], recipe.entity, max_len=recipe.max_len
            )
    features = tuple(built[r.name] for r in recipes)
    pairs = tuple(sorted([("source", source), *metadata])) if metadata else (("source", source),)
    return FeatureContract(features=features, label=label, metadata=pairs)


def fill_numeric_defaults(frame: pd.DataFrame, contract: FeatureContract) -> pd.DataFrame:
    """Missing numeric values become the contract default, what a client sends for a missing value."""
    fills = {
        f.name: frame[f.name].fillna(np.float32(f.default)).astype(np.float32)
        for f in contract.features
        if f.kind is FeatureKind.NUMERIC and f.name in frame.columns
    }
    return frame.assign(**fills) if fills else frame

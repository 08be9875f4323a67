"""Per-feature distribution statistics, online against training: PSI bins, default and OOV rates.

Bins come from the training values only, so a shifted online distribution cannot move them:
numeric features on training quantiles (plus a bin for missing values), categorical ones on the
training's most frequent values plus "other in vocabulary" and "OOV" (not in the contract's
vocabulary; a hashed feature has no vocabulary, so its tail is one "other" bin). Multi-valued
features (multi-categorical lists and behaviour sequences alike) are binned by token, an empty
list as its own value: a sequence's whole string is almost always unique, so binning it as one
value would put every row in the tail and hide a shift in which items the histories hold.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.features import MULTI_VALUE_SEPARATOR, MULTI_VALUED_KINDS, Feature, FeatureKind

PSI_FLOOR = 1e-4  # share given to an empty bin: PSI's log is infinite at 0
MISSING, OTHER, OOV, NONE = "(missing)", "(other)", "(OOV)", "(no tokens)"


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, floor: float = PSI_FLOOR
) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` over bin shares (each floored, renormalised)."""
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError(f"psi needs two non-empty histograms of one length, got {e.shape} and {a.shape}")
    e = np.maximum(e / e.sum(), floor)
    a = np.maximum(a / a.sum(), floor)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


@dataclass(frozen=True)
class Binning:
    """How one feature's values fall into bins: ``labels`` name them, ``counts`` maps values to counts."""

    feature: Feature
    labels: tuple[str, ...]
    edges: tuple[float, ...] = ()  # numeric: interior quantile edges of the training values
    top: tuple[Any, ...] = ()  # categorical: the training's most frequent values

    def counts(self, values: Sequence[Any]) -> np.ndarray:
        out = np.zeros(len(self.labels), dtype=np.int64)
        if self.feature.kind is FeatureKind.NUMERIC:
            numbers = np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)
            finite = np.isfinite(numbers)
            np.add.at(out, np.searchsorted(np.asarray(self.edges), numbers[finite], side="right"), 1)
            out[-1] += int((~finite).sum())
            return out
        index = {value: k for k, value in enumerate(self.top)}
        vocabulary = set(self.feature.vocabulary or ())
        tail = len(self.top)
        for value in tokens(self.feature, values):
            if value in index:
                out[index[value]] += 1
            elif self.feature.vocabulary is None or value in vocabulary:
                out[tail] += 1
            else:
                out[tail + 1] += 1
        return out


def tokens(feature: Feature, values: Sequence[Any]) -> list[Any]:
    """The values binned: one per row, or a multi-valued row's tokens (``NONE`` for an empty row)."""
    if feature.kind not in MULTI_VALUED_KINDS:
        return [MISSING if _is_missing(v) else v for v in values]
    out: list[Any] = []
    for value in values:
        parts = [] if _is_missing(value) else [t for t in str(value).split(MULTI_VALUE_SEPARATOR) if t]
        out.extend(parts or [NONE])
    return out


def fit_binning(
    feature: Feature, train: Sequence[Any], *, numeric_bins: int = 10, top_k: int = 20
) -> Binning:
    """Bins for ``feature`` from its training values (see the module docstring)."""
    if feature.kind is FeatureKind.NUMERIC:
        numbers = np.array([np.nan if _is_missing(v) else float(v) for v in train], dtype=np.float64)
        numbers = numbers[np.isfinite(numbers)]
        quantiles = np.linspace(0, 1, numeric_bins + 1)[1:-1]
        edges = tuple(np.unique(np.quantile(numbers, quantiles))) if len(numbers) else ()
        bounds = ["-inf", *(f"{e:.4g}" for e in edges), "inf"]
        labels = tuple(f"[{lo}, {hi})" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)) + (MISSING,)
        return Binning(feature, labels, edges=edges)
    top = tuple(value for value, _ in Counter(tokens(feature, train)).most_common(top_k))
    tail = (OTHER,) if feature.vocabulary is None else ("(other in vocabulary)", OOV)
    labels = tuple(str(v) if v != "" else '""' for v in top) + tail
    return Binning(feature, labels, top=top)


def default_rate(feature: Feature, values: Sequence[Any]) -> float:
    """Share of rows missing or equal to the contract's default (what the client sends for missing)."""
    if not values:
        return 0.0
    default = feature.default
    if feature.kind is FeatureKind.NUMERIC:
        hit = sum(_is_missing(v) or float(v) == float(np.float32(default)) for v in values)  # type: ignore[arg-type]
    else:
        hit = sum(_is_missing(v) or v == default for v in values)
    return hit / len(values)


def oov_rate(feature: Feature, values: Sequence[Any]) -> float | None:
    """Share of values (tokens) outside the vocabulary, the default aside; None for numeric or hashed."""
    if feature.vocabulary is None:
        return None
    vocabulary = set(feature.vocabulary)
    every = tokens(feature, values)
    outside = sum(v not in vocabulary and v not in (MISSING, NONE) and v != feature.default for v in every)
    return outside / len(every) if every else 0.0

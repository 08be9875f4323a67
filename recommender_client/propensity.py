"""Exploration propensities: the probability the ranking policy puts each served item at its position."""

# The only random step of the ranking is the exploration rule (rerank.operators.InsertExploration):
# it draws min(len(slots), n) distinct items uniformly from the n candidates beyond the top k and
# puts them, in draw order, at the slots. An ordered draw without replacement is uniform over
# ordered samples, so a given pool item lands at a given slot with probability exactly 1/n; every
# other item's position follows from the slots alone, so it is there with probability 1. Pins run
# later and put their items at fixed positions (probability 1), shifting the others by a fixed
# amount, unless a pinned item was itself in the exploration pool: then whether it was drawn moves
# the others at random, and this module reports ``None`` (unknown) rather than a wrong number.

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from recommender_client.pipeline import Batch, Operator

POOL = "exploration_pool"
DRAWN = "exploration_drawn"


class RecordExploration(Operator):
    """Runs an exploration stage and records its pool and draws for :func:`propensities`.

    Wraps the stage the rules built (same name, requirements and products), so the metrics and
    the pipeline's checks see the stage itself.
    """

    def __init__(self, inner: Operator) -> None:
        self.inner = inner
        self.requires = inner.requires
        self.produces = inner.produces | {POOL, DRAWN}

    @property
    def name(self) -> str:
        return self.inner.name

    def transform(self, batch: Batch) -> Batch:
        k = min(batch.request.k, len(batch))
        pool = frozenset(batch.items[k:])
        out = self.inner(batch)
        drawn = frozenset(out.items[:k]) & pool
        return out.with_values(**{POOL: pool, DRAWN: drawn})


def propensities(batch: Batch, pinned: Collection[str]) -> np.ndarray:
    """float64 [len(batch)]: 1.0, 1/n for explored items, NaN where not computable (see above).

    Args:
        batch: the final, truncated batch (values from :class:`RecordExploration` if it ran).
        pinned: the items an active pin placed (they are where they are with probability 1).
    """
    n = len(batch)
    out = np.ones(n, dtype=np.float64)
    pool: frozenset[str] = batch.values.get(POOL, frozenset())
    drawn: frozenset[str] = batch.values.get(DRAWN, frozenset())
    if not drawn:
        return out
    if pool & set(pinned):
        out[:] = np.nan
        return out
    share = 1.0 / len(pool)
    for k, item in enumerate(batch.items):
        if item in drawn:
            out[k] = share
    return out

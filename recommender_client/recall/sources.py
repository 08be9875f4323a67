"""Recall sources (popularity, per-category popularity, item-CF, new items) and their quota merge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.state.protocol import EMPTY_STATE, UserState

DAY = 86400.0


class RecallSource(Protocol):
    """Proposes catalogue positions for a user, best first."""

    name: str

    def recall(self, user_id: str, now: float, limit: int, *, state: UserState = EMPTY_STATE) -> list[int]:
        """Up to ``limit`` catalogue positions, best first, without duplicates.

        ``state`` is the user's online state read at the start of the request (clicks made
        since the artefacts were built); personal sources seed from it before the artefacts.
        """
        ...


def user_history(artifacts: RecallArtifacts, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(items, times, clicked)`` of the user's logged events, oldest first (empty if unknown)."""
    row = artifacts.user_index.get(user_id)
    if row is None:
        return np.zeros(0, np.int32), np.zeros(0), np.zeros(0, bool)
    lo, hi = int(artifacts.history_offsets[row]), int(artifacts.history_offsets[row + 1])
    return artifacts.history_items[lo:hi], artifacts.history_times[lo:hi], artifacts.history_clicked[lo:hi]


def recent_clicks(
    artifacts: RecallArtifacts, user_id: str, limit: int, state: UserState = EMPTY_STATE
) -> list[int]:
    """The user's most recently clicked items (catalogue positions), newest first, each once.

    The online clicks come first (they are newer than anything the artefacts were built from;
    ids outside the catalogue are skipped), then the artefact history's: a click posted to
    /events seeds item-CF on the next request, without a rebuild.
    """
    index = artifacts.catalog.index
    out: list[int] = []
    for item_id in state.clicked:
        pos = index.get(item_id)
        if pos is not None and pos not in out:
            out.append(pos)
            if len(out) == limit:
                return out
    items, _, clicked = user_history(artifacts, user_id)
    for item in items[clicked][::-1].tolist():
        if item not in out:
            out.append(item)
            if len(out) == limit:
                break
    return out


class PopularityRecall:
    """Globally popular items (time-decayed click counts): the cold-start backbone."""

    name = "popularity"

    def __init__(self, artifacts: RecallArtifacts) -> None:
        self._items = artifacts.popular_items

    def recall(self, user_id: str, now: float, limit: int, *, state: UserState = EMPTY_STATE) -> list[int]:
        return self._items[:limit].tolist()


class CategoryPopularityRecall:
    """Popular items of the categories the user clicked most, interleaved across those categories.

    Categories are ranked by the user's click count among their recent clicks (ties by name);
    the lists of the top ``top_categories`` are interleaved round-robin.
    """

    name = "category_popularity"

    def __init__(self, artifacts: RecallArtifacts, *, top_categories: int = 3, history: int = 50) -> None:
        if top_categories < 1 or history < 1:
            raise ValueError("CategoryPopularityRecall: top_categories and history must be >= 1")
        self._a = artifacts
        self._top = top_categories
        self._history = history
        self._cat_row = {name: k for k, name in enumerate(artifacts.category_names)}

    def recall(self, user_id: str, now: float, limit: int, *, state: UserState = EMPTY_STATE) -> list[int]:
        counts: dict[str, int] = {}
        for item in recent_clicks(self._a, user_id, self._history, state):
            cat = self._a.catalog.category[item]
            if cat in self._cat_row:
                counts[cat] = counts.get(cat, 0) + 1
        top = sorted(counts, key=lambda c: (-counts[c], c))[: self._top]
        lists = []
        for cat in top:
            row = self._cat_row[cat]
            lo, hi = self._a.category_offsets[row], self._a.category_offsets[row + 1]
            lists.append(self._a.category_items[lo:hi].tolist())
        return _interleave(lists, limit)


class ItemCFRecall:
    """Neighbours of the user's recent clicks (item-to-item co-occurrence).

    Candidate ``j`` scores ``sum_r decay**r * sim(seed_r, j)`` over the seeds ``r = 0, 1, ...``
    (newest click first, online clicks before the artefacts'); the seeds themselves are not
    proposed again.
    """

    name = "itemcf"

    def __init__(self, artifacts: RecallArtifacts, *, seeds: int = 20, decay: float = 0.9) -> None:
        if seeds < 1 or not 0 < decay <= 1:
            raise ValueError(f"ItemCFRecall: need seeds >= 1 and 0 < decay <= 1, got {seeds}, {decay}")
        self._a = artifacts
        self._seeds = seeds
        self._decay = decay

    def recall(self, user_id: str, now: float, limit: int, *, state: UserState = EMPTY_STATE) -> list[int]:
        seeds = recent_clicks(self._a, user_id, self._seeds, state)
        if not seeds:
            return []
        neigh = self._a.cf_neighbors[seeds]
        weights = (
            self._a.cf_scores[seeds].astype(np.float64) * (self._decay ** np.arange(len(seeds)))[:, None]
        )
        valid = neigh >= 0
        totals = np.bincount(neigh[valid], weights=weights[valid], minlength=len(self._a.catalog))
        totals[seeds] = 0.0
        found = np.flatnonzero(totals > 0)
        order = np.lexsort((found, -totals[found]))
        return found[order][:limit].tolist()


class NewItemRecall:
    """Items published within the last ``max_age_days`` before ``now`` (and not after it), newest first."""

    name = "new"

    def __init__(self, artifacts: RecallArtifacts, *, max_age_days: float = 3.0) -> None:
        if max_age_days <= 0:
            raise ValueError(f"NewItemRecall: max_age_days must be > 0, got {max_age_days}")
        published = artifacts.catalog.publish_time
        known = np.flatnonzero(np.isfinite(published))
        self._order = known[np.lexsort((known, -published[known]))]  # newest first
        self._times = published[self._order]
        self._max_age = max_age_days * DAY

    def recall(self, user_id: str, now: float, limit: int, *, state: UserState = EMPTY_STATE) -> list[int]:
        # times are descending: skip the not-yet-published, stop at the first too old
        first = int(np.searchsorted(-self._times, -now, side="left"))
        last = int(np.searchsorted(-self._times, -(now - self._max_age), side="right"))
        return self._order[first:last][:limit].tolist()


@dataclass(frozen=True)
class Recalled:
    """Merged recall: catalogue positions in recall order and the source that proposed each first."""

    positions: tuple[int, ...]
    sources: tuple[str, ...]


def merge_recall(lists: Mapping[str, Sequence[int]], quotas: Mapping[str, int], max_total: int) -> Recalled:
    """Interleave the sources round-robin (in ``lists`` order), deduplicated, each within its quota.

    A source whose next item was already taken moves on to its following item without using
    quota; the merge stops at ``max_total`` items or when every source is spent.
    """
    unknown = set(lists) - set(quotas)
    if unknown:
        raise ValueError(f"merge_recall: no quota for sources {sorted(unknown)}")
    # One iterator per source: a round asks each active source for its next unseen item with a
    # C-level ``for`` over the iterator (which also skips the taken ones), so the loop's cost is
    # a few operations per item taken; this runs for every request (~2x the indexed loop's speed).
    names = [name for name in lists if quotas[name] > 0]
    iterators = [iter(lists[name]) for name in names]
    left = [quotas[name] for name in names]
    seen: set[int] = set()
    positions: list[int] = []
    sources: list[str] = []
    active = list(range(len(names)))
    room = max_total
    while active and room > 0:
        still = []
        for s in active:
            for item in iterators[s]:
                if item not in seen:
                    seen.add(item)
                    positions.append(item)
                    sources.append(names[s])
                    room -= 1
                    left[s] -= 1
                    if left[s] > 0:
                        still.append(s)
                    break
            if room == 0:
                break
        active = still
    return Recalled(tuple(positions), tuple(sources))


def _interleave(lists: Sequence[Sequence[int]], limit: int) -> list[int]:
    out: list[int] = []
    seen: set[int] = set()
    for rank in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if rank < len(items) and items[rank] not in seen:
                seen.add(items[rank])
                out.append(items[rank])
                if len(out) == limit:
                    return out
    return out

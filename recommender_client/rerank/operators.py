"""Operator-rule rerank stages: filters, score multipliers, diversity and exploration (pins: pins.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence

import numpy as np

from recommender_client.pipeline import USER_STATE, Batch, Operator, user_state
from recommender_client.rerank.exposure import ExposureLog
from training.features import MULTI_VALUE_SEPARATOR

HOUR = 3600.0
# A freshness multiplier below this is too small to count as the rule moving the item.
MIN_NOTED_BOOST = 1.01

SeenLookup = Callable[[str], tuple[Sequence[str], np.ndarray]]


def _drop(batch: Batch, remove: np.ndarray) -> Batch:
    """Remove the items flagged in ``remove`` and remember them, so a pin cannot bring them back."""
    if not remove.any():
        return batch
    gone = {batch.items[i] for i in np.flatnonzero(remove).tolist()}
    kept = batch.take(np.flatnonzero(~remove))
    return kept.with_values(removed=frozenset(batch.values.get("removed", frozenset())) | gone)


class FilterBlacklisted(Operator):
    """Drops blacklisted items and every item of a blacklisted category."""

    requires = frozenset({"items", "category"})

    def __init__(self, rule: str, *, items: Collection[str] = (), categories: Collection[str] = ()) -> None:
        self.rule = rule
        self.items = frozenset(items)
        self.categories = frozenset(categories)

    def transform(self, batch: Batch) -> Batch:
        cats = batch.columns["category"]
        remove = np.array(
            [
                i in self.items or c in self.categories
                for i, c in zip(batch.items, cats.tolist(), strict=True)
            ],
            dtype=bool,
        )
        return _drop(batch, remove)


class FilterSeen(Operator):
    """Drops items the user interacted with at or after ``now - ttl_s``.

    Seen is the artefacts' history (``seen``, fixed until they are rebuilt) together with the
    clicks in the request's online state: once the artefacts are older than the TTL only the
    online clicks keep an item the user clicked off the list.
    """

    requires = frozenset({"items"})

    def __init__(self, rule: str, *, ttl_s: float, seen: SeenLookup) -> None:
        if ttl_s <= 0:
            raise ValueError(f"rule {rule!r}: ttl must be > 0")
        self.rule = rule
        self.ttl_s = ttl_s
        self.seen = seen

    def transform(self, batch: Batch) -> Batch:
        req = batch.request
        since = req.now - self.ttl_s
        items, times = self.seen(req.user_id)
        recent = {item for item, t in zip(items, np.asarray(times).tolist(), strict=True) if t >= since}
        recent |= user_state(batch).clicked_since(since)
        return _drop(batch, np.array([i in recent for i in batch.items], dtype=bool))


class FilterUnpublished(Operator):
    """Drops items whose publish time is after ``now`` (unknown publish times are kept)."""

    requires = frozenset({"publish_time"})

    def __init__(self, rule: str) -> None:
        self.rule = rule

    def transform(self, batch: Batch) -> Batch:
        publish = batch.columns["publish_time"]
        return _drop(batch, np.isfinite(publish) & (publish > batch.request.now))


class CapFrequency(Operator):
    """Drops items already shown to the user ``max_impressions`` times within the last ``period_s``.

    Impressions are counted in the request's online state when the batch carries one (the
    recommender always puts it there: one read for every stage, whatever the store); only a
    pipeline run without a recommender counts in ``exposures``.
    """

    requires = frozenset({"items"})

    def __init__(self, rule: str, *, exposures: ExposureLog, max_impressions: int, period_s: float) -> None:
        if max_impressions < 1 or period_s <= 0:
            raise ValueError(f"rule {rule!r}: need max_impressions >= 1 and period > 0")
        self.rule = rule
        self.exposures = exposures
        self.max_impressions = max_impressions
        self.period_s = period_s

    def transform(self, batch: Batch) -> Batch:
        req = batch.request
        since = req.now - self.period_s
        if USER_STATE in batch.values:
            counts = user_state(batch).exposures(batch.items, since=since, until=req.now)
        else:
            counts = self.exposures.count(req.user_id, batch.items, since=since, until=req.now)
        return _drop(batch, np.asarray(counts) >= self.max_impressions)


class ScaleScores(Operator):
    """Multiplies ``rank_score`` of matching items (boost above 1, bury below 1).

    An item matches if its id is listed, its category is listed, or any of its tags is listed.
    """

    requires = frozenset({"rank_score", "category", "tags"})

    def __init__(
        self,
        rule: str,
        *,
        multiplier: float,
        items: Collection[str] = (),
        categories: Collection[str] = (),
        tags: Collection[str] = (),
    ) -> None:
        if not multiplier > 0:
            raise ValueError(f"rule {rule!r}: multiplier must be > 0, got {multiplier}")
        self.rule = rule
        self.multiplier = multiplier
        self.items = frozenset(items)
        self.categories = frozenset(categories)
        self.tags = frozenset(tags)

    def transform(self, batch: Batch) -> Batch:
        match = np.array(
            [
                item in self.items
                or cat in self.categories
                or bool(self.tags and self.tags.intersection(tags.split(MULTI_VALUE_SEPARATOR)))
                for item, cat, tags in zip(
                    batch.items,
                    batch.columns["category"].tolist(),
                    batch.columns["tags"].tolist(),
                    strict=True,
                )
            ],
            dtype=bool,
        )
        scores = np.where(match, batch.columns["rank_score"] * self.multiplier, batch.columns["rank_score"])
        return batch.with_columns(rank_score=scores).noted(np.flatnonzero(match).tolist(), self.rule)


class BoostFreshness(Operator):
    """Multiplies ``rank_score`` by ``1 + max_boost * 0.5 ** (age_hours / half_life_hours)``.

    Age counts from the publish time to ``now`` (never negative); unknown publish times get no
    boost. The rule is noted on items whose multiplier reaches ``MIN_NOTED_BOOST``.
    """

    requires = frozenset({"rank_score", "publish_time"})

    def __init__(self, rule: str, *, max_boost: float, half_life_hours: float) -> None:
        if max_boost <= 0 or half_life_hours <= 0:
            raise ValueError(f"rule {rule!r}: max_boost and half_life_hours must be > 0")
        self.rule = rule
        self.max_boost = max_boost
        self.half_life_hours = half_life_hours

    def transform(self, batch: Batch) -> Batch:
        publish = batch.columns["publish_time"]
        known = np.isfinite(publish)
        age_h = np.maximum(batch.request.now - np.where(known, publish, 0.0), 0.0) / HOUR
        multiplier = np.where(known, 1.0 + self.max_boost * 0.5 ** (age_h / self.half_life_hours), 1.0)
        scores = batch.columns["rank_score"] * multiplier
        moved = np.flatnonzero(multiplier >= MIN_NOTED_BOOST).tolist()
        return batch.with_columns(rank_score=scores).noted(moved, self.rule)


class CapPerCategory(Operator):
    """At most ``max_per_window`` items of one category in any ``window`` consecutive positions.

    Greedy: each next position takes the best remaining item that keeps the constraint; when no
    remaining item can, the best remaining one is taken anyway (the constraint cannot be met).
    Items passed over at least once are noted. Items without a category are never limited.
    Only the first ``request.k`` positions (what the response shows) are arranged; the items
    after them keep their order. The greedy picks for those positions do not depend on later
    ones, so this is the full arrangement's top k at a k/N of the cost (0.4 ms for 500).
    """

    requires = frozenset({"category"})

    def __init__(self, rule: str, *, max_per_window: int, window: int) -> None:
        if max_per_window < 1 or window < 2 or max_per_window >= window:
            raise ValueError(
                f"rule {rule!r}: need 1 <= max_per_window < window, got {max_per_window}, {window}"
            )
        self.rule = rule
        self.max_per_window = max_per_window
        self.window = window

    def transform(self, batch: Batch) -> Batch:
        cats = batch.columns["category"].tolist()
        limit = self.max_per_window
        span = self.window - 1
        # Kept up to date per pick instead of recounted: per-category counts over the last ``span``
        # picks, the categories at their limit, and how many unplaced items each category has left
        # (when every remaining item is blocked, the fallback is known without a scan).
        in_window: dict[object, int] = {}
        blocked: set[object] = set()
        left = Counter(cats)
        remaining = list(range(len(cats)))
        order: list[int] = []
        noted: list[int] = []
        highest = -1  # an item was passed over iff a later (higher) index was picked before it
        positions = batch.request.k
        while remaining and len(order) < positions:
            idx = remaining[0]
            cat = cats[idx]
            if cat in blocked and sum(left[c] for c in blocked) < len(remaining):
                for j, candidate in enumerate(remaining):
                    if cats[candidate] not in blocked:
                        idx = candidate
                        cat = cats[idx]
                        del remaining[j]
                        break
            else:  # the best remaining item fits, or nothing fits and it is taken anyway
                del remaining[0]
            if idx < highest:
                noted.append(len(order))
            else:
                highest = idx
            order.append(idx)
            left[cat] -= 1
            count = in_window.get(cat, 0) + 1
            in_window[cat] = count
            if count >= limit and cat != "":
                blocked.add(cat)
            if len(order) > span:
                leaving = cats[order[-span - 1]]
                count = in_window[leaving] - 1
                in_window[leaving] = count
                if count < limit:
                    blocked.discard(leaving)
        order += remaining
        return batch.take(order).noted(noted, self.rule)


class InsertExploration(Operator):
    """Puts randomly chosen items from beyond the top ``k`` into the given slots (0-based positions).

    The choice uses ``request.rng`` when set, else ``numpy.random.default_rng(request.seed)``, so
    the same request and seed always explore the same items. Slots at or beyond ``k`` are ignored.
    """

    requires = frozenset({"items"})

    def __init__(self, rule: str, *, slots: Sequence[int]) -> None:
        if not slots or any(s < 0 for s in slots) or len(set(slots)) != len(slots):
            raise ValueError(f"rule {rule!r}: slots must be distinct positions >= 0, got {list(slots)}")
        self.rule = rule
        self.slots = tuple(sorted(slots))

    def transform(self, batch: Batch) -> Batch:
        req = batch.request
        k = min(req.k, len(batch))
        slots = [s for s in self.slots if s < k]
        pool = list(range(k, len(batch)))
        if not slots or not pool:
            return batch
        rng = req.rng if req.rng is not None else np.random.default_rng(req.seed)
        chosen = [
            pool[i] for i in rng.choice(len(pool), size=min(len(slots), len(pool)), replace=False).tolist()
        ]
        taken = set(chosen)
        order = [i for i in range(len(batch)) if i not in taken]
        for slot, idx in zip(slots, chosen, strict=False):
            order.insert(slot, idx)
        out = batch.take(order)
        return out.noted([order.index(idx) for idx in chosen], self.rule)

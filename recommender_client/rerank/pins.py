"""Pins: operator-chosen items at fixed positions, within time windows, never past a removing rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from recommender_client.pipeline import USER_STATE, Batch, Operator
from recommender_client.recall.artifacts import Catalog
from recommender_client.stages import catalog_columns


@dataclass(frozen=True)
class Pin:
    """Keep ``item`` at ``position`` (0-based) while ``start <= now < end`` (None: unbounded)."""

    rule: str
    item: str
    position: int
    start: float | None = None
    end: float | None = None

    def active(self, now: float) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    def overlaps(self, other: Pin) -> bool:
        """Whether both pins can be active at one instant (windows ``[start, end)``, None unbounded)."""
        inf = math.inf
        a0, a1 = self.start if self.start is not None else -inf, self.end if self.end is not None else inf
        b0, b1 = other.start if other.start is not None else -inf, other.end if other.end is not None else inf
        return a0 < b1 and b0 < a1

    def conflict(self, other: Pin) -> str | None:
        """``'item'`` or ``'position'`` when both pins claim it at some instant, else None."""
        if not self.overlaps(other):
            return None
        if self.item == other.item:
            return "item"
        return "position" if self.position == other.position else None


class PinItems(Operator):
    """Places pinned items at their positions, inserting catalogue items that recall did not bring.

    All active pins are applied together (taken out, then put back in ascending position), so
    one pin never shifts another. A pin never serves an item a removing rule would drop: an
    item a filter removed from the candidates stays out, and an item recall did not bring goes
    through the same ``filters`` (blacklist, unpublished, seen, frequency cap) before it is
    inserted. Pins of one item or one position are refused at construction only when their
    time windows overlap ("item A in week 1, item B in week 2" is two pins on one position).
    """

    requires = frozenset({"items", "rank_score"})

    def __init__(self, pins: Sequence[Pin], *, catalog: Catalog, filters: Sequence[Operator] = ()) -> None:
        bad = [p.rule for p in pins if p.position < 0]
        if bad:
            raise ValueError(f"pins {bad}: position must be >= 0")
        for k, pin in enumerate(pins):
            for other in pins[:k]:
                what = pin.conflict(other)
                if what is not None:
                    raise ValueError(
                        f"pins {other.rule!r} and {pin.rule!r}: both pin {what} {getattr(pin, what)!r} "
                        "in overlapping time windows"
                    )
        self.pins = tuple(sorted(pins, key=lambda p: p.position))
        self.catalog = catalog
        self.filters = tuple(filters)

    def transform(self, batch: Batch) -> Batch:
        removed = batch.values.get("removed", frozenset())
        active = [
            p
            for p in self.pins
            if p.active(batch.request.now)
            and p.item not in removed
            and (p.item in batch.items or p.item in self.catalog.index)
        ]
        missing = self._admitted(batch, [p.item for p in active if p.item not in batch.items])
        active = [p for p in active if p.item in batch.items or p.item in missing]
        if not active:
            return batch
        batch = self._add_missing(batch, missing)
        where = {item: k for k, item in enumerate(batch.items)}
        pinned = {where[p.item] for p in active}
        order = [i for i in range(len(batch)) if i not in pinned]
        for p in active:
            order.insert(min(p.position, len(order)), where[p.item])
        out = batch.take(order)
        for p in active:
            out = out.noted([out.items.index(p.item)], p.rule)
        return out

    def _admitted(self, batch: Batch, items: list[str]) -> list[str]:
        """The pinned items from outside the candidates that every removing rule lets through."""
        if not items or not self.filters:
            return items
        # the probe carries the request's online state, so seen and capped mean what they mean
        # for the candidates (an item clicked online is not pinned back in)
        values = {USER_STATE: batch.values[USER_STATE]} if USER_STATE in batch.values else {}
        probe = Batch(
            batch.request, items=tuple(items), columns=catalog_columns(self.catalog, items), values=values
        )
        for op in self.filters:
            probe = op(probe)
        return list(probe.items)

    def _add_missing(self, batch: Batch, items: list[str]) -> Batch:
        if not items:
            return batch
        meta = catalog_columns(self.catalog, items)
        columns = {}
        for name, col in batch.columns.items():
            if name in meta:
                extra = meta[name]
            elif name == "recall_source":
                extra = np.array(["pin"] * len(items), dtype=object)
            elif col.dtype.kind == "f":
                extra = np.full(len(items), np.nan, dtype=col.dtype)
            elif col.dtype.kind in "iu":
                extra = np.full(len(items), -1, dtype=col.dtype)
            elif col.dtype.kind == "b":
                extra = np.zeros(len(items), dtype=bool)
            else:
                extra = np.array([""] * len(items), dtype=object)
            columns[name] = np.concatenate([col, extra.astype(col.dtype)])
        return replace(
            batch, items=batch.items + tuple(items), columns=columns, rules=batch.rules + ((),) * len(items)
        )

"""Simulated users of the synthetic world: who asks, in which context, for which candidates, and what they click.

A user clicks the item the ranker served at position ``pos`` (0-based, as the ranker numbers
them) with probability ``sigmoid(true_logit(user, item, hour, device, position=1)) *
position_decay(pos)``: the world's true click probability at the top slot, times the probability
that the user looks that far down the list, ``EXAMINE ** pos`` (a user who looked at one item
looks at the next with probability 0.8: 1 at the top, 0.33 at the 6th, 0.014 at the 20th).
Position bias is part of the world, so a better ranking earns more clicks from the same candidates.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data.synthetic import item_names, user_names
from training.data.synthetic_world import DEVICES, World, true_logit

EXAMINE = 0.8


def position_decay(positions: np.ndarray) -> np.ndarray:
    """Probability that a user examines 0-based ``positions``: ``EXAMINE ** pos``."""
    return EXAMINE ** np.asarray(positions, dtype=np.float64)


@dataclass(frozen=True)
class SimRequest:
    """One simulated visit: world indices of the user, context and candidate items."""

    user: int
    hour: int
    device: int
    position: int
    items: np.ndarray

    @property
    def user_id(self) -> str:
        return f"u{self.user}"


class SimulatedUsers:
    """Draws visits the way the synthetic data was drawn, and clicks from the world's true logit.

    Users come by traffic share, devices by each user's device mix, hours uniformly, candidates
    by popularity among ``known_items`` published at ``now`` (distinct within a list): items the
    models were trained on, so an unknown item (a real cause of skew of its own, which the skew
    report flags as OOV) does not blur the planted one. The context's
    ``position`` is drawn uniformly as in training: it is constant within a list, so it moves
    every candidate's score alike and never the order.
    """

    def __init__(self, world: World, *, now: int, list_size: int, known_items: Collection[str]) -> None:
        config = world.config
        published = world.publish_order[: np.searchsorted(world.publish_sorted, now, side="right")]
        known = {int(i[1:]) for i in known_items}
        self.world = world
        self._items = np.array([i for i in published if int(i) in known], dtype=np.int64)
        self.list_size = min(list_size, len(self._items))
        weights = world.item_popularity[self._items]
        self._item_p = weights / weights.sum()
        self._users = user_names(config.num_users)
        self._item_ids = item_names(config.num_items)

    def draw(self, rng: np.random.Generator) -> SimRequest:
        """One visit (the same ``rng`` state gives the same visit)."""
        world = self.world
        user = min(
            int(np.searchsorted(world.user_cum, rng.random() * world.user_cum[-1], side="right")),
            world.config.num_users - 1,
        )
        r = rng.random()
        device = int(r > world.user_device_cum[user, 0]) + int(r > world.user_device_cum[user, 1])
        hour = int(rng.integers(0, 24))
        position = int(rng.integers(1, world.config.num_positions + 1))
        items = rng.choice(self._items, size=self.list_size, replace=False, p=self._item_p)
        return SimRequest(user=user, hour=hour, device=device, position=position, items=items)

    def body(self, visit: SimRequest) -> dict[str, Any]:
        """The ``POST /recommend`` body: every candidate is served (k = the list's length)."""
        return {
            "user_id": str(self._users[visit.user]),
            "k": int(len(visit.items)),
            "context": {"hour": visit.hour, "device": DEVICES[visit.device], "position": visit.position},
            "candidates": [str(self._item_ids[i]) for i in visit.items],
        }

    def click_probability(self, visit: SimRequest, item_ids: list[str], positions: list[int]) -> np.ndarray:
        """True click probability of each served item at its served (0-based) position."""
        items = np.array([int(i[1:]) for i in item_ids], dtype=np.int64)
        n = len(items)
        logit = true_logit(
            self.world,
            np.full(n, visit.user),
            items,
            np.full(n, visit.hour),
            np.full(n, visit.device),
            np.ones(n, dtype=np.int64),
        )
        return position_decay(np.asarray(positions)) / (1.0 + np.exp(-logit))

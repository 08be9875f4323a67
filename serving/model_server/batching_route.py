"""Which queue a run joins: TF Serving's TensorSignature, the sorted input and output tensor names."""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from serving.model_server.servable import Servable

# Distinct (servable, signature name, output filter) routes remembered (bounded: names are
# client-chosen).
_MAX_ROUTES = 256


@dataclass(frozen=True, slots=True)
class Route:
    """How the runs of one (servable, signature, output filter) reach their queue and come back.

    BatchingSession keys its schedulers by TensorSignature, so runs of different signatures or
    output filters that feed and fetch the same tensors share a queue and a batch; each task
    reads its own aliases back by tensor name.

    Attributes:
        owner: the servable, weakly (a route must not keep an unloaded version alive).
        queue_key: (servable id, input tensor names, output tensor names).
        signature: the resolved signature key a batch opened by this route runs.
        output_filter: the output filter that batch runs with.
        input_names: sorted input tensor names; a task lists its inputs in this order.
        feed_order: for each input name, the alias that feeds it.
        feeds: (alias, index into input_names) for every alias the signature takes.
        fetch_order: for each sorted output tensor name, the alias that fetches it.
        outputs: (alias, index into the output names) in this route's output order.
    """

    owner: weakref.ref
    queue_key: Hashable
    signature: str
    output_filter: tuple[str, ...]
    input_names: tuple[str, ...]
    feed_order: tuple[str, ...]
    feeds: tuple[tuple[str, int], ...]
    fetch_order: tuple[str, ...]
    outputs: tuple[tuple[str, int], ...]


class Routes:
    """Routes built once per (servable, signature name, output filter), from Servable.prepare."""

    def __init__(self) -> None:
        self._routes: dict[tuple[int, str, tuple[str, ...]], Route] = {}

    def get(
        self,
        servable: Servable,
        signature_name: str,
        output_filter: tuple[str, ...],
        prepared: tuple[str, Mapping[str, tuple[str, np.ndarray]], Sequence[tuple[str, str]]],
    ) -> Route:
        """The route of a run, given what ``servable.prepare`` returned for it."""
        cache_key = (id(servable), signature_name, output_filter)
        route = self._routes.get(cache_key)
        if route is not None and route.owner() is servable:
            return route
        route = _build(servable, output_filter, *prepared)
        if len(self._routes) >= _MAX_ROUTES:
            # Unloaded versions leave dead routes behind: drop them before giving up caching.
            for stale in [k for k, r in self._routes.items() if r.owner() is None]:
                del self._routes[stale]
        if len(self._routes) < _MAX_ROUTES:
            self._routes[cache_key] = route
        return route


def _build(
    servable: Servable,
    output_filter: tuple[str, ...],
    signature: str,
    feeds: Mapping[str, tuple[str, np.ndarray]],
    fetches: Sequence[tuple[str, str]],
) -> Route:
    input_names = tuple(sorted({name for name, _ in feeds.values()}))
    output_names = tuple(sorted({name for _, name in fetches}))
    input_index = {name: i for i, name in enumerate(input_names)}
    output_index = {name: i for i, name in enumerate(output_names)}
    feed_order: dict[str, str] = {}
    for alias, (name, _) in feeds.items():
        feed_order.setdefault(name, alias)
    fetch_order: dict[str, str] = {}
    for alias, name in fetches:
        fetch_order.setdefault(name, alias)
    return Route(
        owner=weakref.ref(servable),
        queue_key=(id(servable), input_names, output_names),
        signature=signature,
        output_filter=output_filter,
        input_names=input_names,
        feed_order=tuple(feed_order[name] for name in input_names),
        feeds=tuple((alias, input_index[name]) for alias, (name, _) in feeds.items()),
        fetch_order=tuple(fetch_order[name] for name in output_names),
        outputs=tuple((alias, output_index[name]) for alias, name in fetches),
    )

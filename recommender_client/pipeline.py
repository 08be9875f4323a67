"""The ranking pipeline: operators that declare what they require and produce, run in a checked order."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any

import numpy as np

from recommender_client.state.protocol import EMPTY_STATE, UserState

# The batch value holding the user's online state, read once before the pipeline runs.
USER_STATE = "user_state"


class PipelineError(ValueError):
    """Operators are wired so that some requirement is never produced upstream."""


@dataclass(frozen=True)
class RankRequest:
    """One recommendation request as the pipeline sees it.

    Attributes:
        user_id: who asks (unknown users take the cold-start path).
        k: how many items to return.
        context: request context features (raw, coerced by the feature join).
        now: wall-clock epoch seconds the rules evaluate time windows and ages against.
        candidates: an explicit candidate list that replaces recall.
        deadline: ``time.monotonic()`` value by which the answer must be ready.
        seed: seeds the exploration RNG when ``rng`` is not given (an int or a sequence of
            ints, as ``numpy.random.default_rng`` takes; the generator is built only if drawn from).
        rng: the random generator for exploration (passed in, so runs are reproducible).
        request_id: names the request in the served log, the response and the events that
            follow it (clicks are joined back to what was served through it).
    """

    user_id: str
    k: int
    context: Mapping[str, Any] = field(default_factory=dict)
    now: float = 0.0
    candidates: tuple[str, ...] | None = None
    deadline: float | None = None
    seed: int | tuple[int, ...] = 0
    rng: np.random.Generator | None = field(default=None, compare=False)
    request_id: str = ""


@dataclass(frozen=True)
class Batch:
    """Candidates flowing through the pipeline: item ids plus aligned per-item columns.

    ``columns`` hold one numpy array per name, aligned with ``items``; ``rules`` holds, per
    item, the names of the rules that moved it; ``values`` holds request-level products (model
    inputs, the degraded flag...) and the user's online state (``USER_STATE``, see
    :func:`user_state`). Operators never mutate a batch: they return a new one.
    """

    request: RankRequest
    items: tuple[str, ...] = ()
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    rules: tuple[tuple[str, ...], ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.items)
        if not self.rules and n:
            object.__setattr__(self, "rules", ((),) * n)
        if len(self.rules) != n:
            raise PipelineError(f"batch has {len(self.rules)} rule lists for {n} items")
        for name, col in self.columns.items():
            if len(col) != n:
                raise PipelineError(f"batch column {name!r} has {len(col)} values for {n} items")

    def __len__(self) -> int:
        return len(self.items)

    def with_items(self, items: Sequence[str], columns: Mapping[str, np.ndarray]) -> Batch:
        """A batch with a new candidate set (rule notes reset)."""
        return replace(self, items=tuple(items), columns=dict(columns), rules=((),) * len(items))

    def with_columns(self, **columns: np.ndarray) -> Batch:
        return replace(self, columns={**self.columns, **columns})

    def with_values(self, **values: Any) -> Batch:
        return replace(self, values={**self.values, **values})

    def take(self, indices: Sequence[int] | np.ndarray) -> Batch:
        """Reorder or subset every per-item field by ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        positions = idx.tolist()
        return replace(
            self,
            items=_pick(self.items, positions),
            columns={name: col[idx] for name, col in self.columns.items()},
            rules=_pick(self.rules, positions),
        )

    def noted(self, indices: Iterable[int], rule: str) -> Batch:
        """Record that ``rule`` moved the items at ``indices``."""
        marked = set(indices)
        if not marked:
            return self
        # touch only the marked positions (few) instead of rebuilding every item's note
        rules = list(self.rules)
        n = len(rules)
        for k in marked:
            if 0 <= k < n and rule not in rules[k]:
                rules[k] = rules[k] + (rule,)
        return replace(self, rules=tuple(rules))


def user_state(batch: Batch) -> UserState:
    """The online state the recommender read for this request (empty when the pipeline runs alone)."""
    state: UserState = batch.values.get(USER_STATE, EMPTY_STATE)
    return state


def _pick(values: tuple[Any, ...], positions: list[int]) -> tuple[Any, ...]:
    """``tuple(values[i] for i in positions)`` in C (``itemgetter``), the hot path of ``take``."""
    if len(positions) > 1:
        return itemgetter(*positions)(values)
    return tuple(values[i] for i in positions)


class Operator:
    """One pipeline stage: configured in ``__init__``, one pure call.

    Subclasses set ``requires`` and ``produces`` (names of batch columns or values) and
    implement :meth:`transform`.
    """

    requires: frozenset[str] = frozenset()
    produces: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return type(self).__name__

    def transform(self, batch: Batch) -> Batch:
        raise NotImplementedError

    def __call__(self, batch: Batch) -> Batch:
        return self.transform(batch)


StageObserver = Callable[[str, float], None]


class Pipeline:
    """Operators run in order; construction fails if any requirement is not produced upstream.

    Args:
        operators: the stages, in execution order.
        provided: names available before the first stage (none by default: recall produces items).
    """

    def __init__(self, operators: Sequence[Operator], *, provided: Iterable[str] = ()) -> None:
        available = set(provided)
        for position, op in enumerate(operators):
            missing = sorted(op.requires - available)
            if missing:
                raise PipelineError(
                    f"stage {position} ({op.name}) requires {missing}, which no earlier stage produces "
                    f"(available: {sorted(available)})"
                )
            available |= op.produces
        self.operators = tuple(operators)
        self.available = frozenset(available)

    def run(self, batch: Batch, *, observe: StageObserver | None = None) -> Batch:
        """Run every stage; ``observe(stage_name, seconds)`` is called after each one."""
        for op in self.operators:
            start = time.perf_counter()
            batch = op(batch)
            if observe is not None:
                observe(op.name, time.perf_counter() - start)
        return batch

    async def run_async(self, batch: Batch, *, observe: StageObserver | None = None) -> Batch:
        """:meth:`run` on an event loop: stages with ``transform_async`` (remote calls) are awaited."""
        for op in self.operators:
            start = time.perf_counter()
            transform_async = getattr(op, "transform_async", None)
            batch = await transform_async(batch) if transform_async is not None else op(batch)
            if observe is not None:
                observe(op.name, time.perf_counter() - start)
        return batch

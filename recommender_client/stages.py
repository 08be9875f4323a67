"""Core pipeline stages: recall, feature join, scoring (with fallback), ordering and truncation."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter

import numpy as np

from recommender_client.breaker import CircuitBreaker
from recommender_client.features import FeatureJoiner
from recommender_client.pipeline import Batch, Operator, user_state
from recommender_client.ranking import Scorer, ScoringError, ScoringResult
from recommender_client.recall.artifacts import Catalog
from recommender_client.recall.sources import RecallSource, merge_recall

ITEM_META = frozenset({"category", "tags", "publish_time"})
EMPTY_RESULT = ScoringResult(np.zeros(0, np.float32), None)


def catalog_columns(catalog: Catalog, items: Sequence[str]) -> dict[str, np.ndarray]:
    """Category, tags and publish time per item ('' / NaN for items outside the catalogue)."""
    return catalog_columns_at(catalog, catalog.positions(items))


def catalog_columns_at(catalog: Catalog, pos: np.ndarray) -> dict[str, np.ndarray]:
    """``catalog_columns`` from catalogue positions (int64, -1 for unknown items)."""
    n = len(pos)
    known = pos >= 0
    category = np.empty(n, dtype=object)
    tags = np.empty(n, dtype=object)
    publish = np.full(n, np.nan)
    if known.all():
        if n:
            category[:] = _gather(catalog.category, pos)
            tags[:] = _gather(catalog.tags, pos)
            publish[:] = catalog.publish_time[pos]
        return {"category": category, "tags": tags, "publish_time": publish}
    category[:] = ""
    tags[:] = ""
    hits = pos[known]
    if len(hits):
        category[known] = _gather(catalog.category, hits)
        tags[known] = _gather(catalog.tags, hits)
        publish[known] = catalog.publish_time[hits]
    return {"category": category, "tags": tags, "publish_time": publish}


def _gather(values: Sequence[str], pos: np.ndarray) -> list[str]:
    """``[values[p] for p in pos]`` via ``itemgetter`` (C speed; a list so numpy keeps one str per slot)."""
    if len(pos) == 1:
        return [values[int(pos[0])]]
    return list(itemgetter(*pos.tolist())(values))


class RecallCandidates(Operator):
    """Candidates from the recall sources merged under per-source quotas, or the request's own list.

    Produces the items (recall order) with their ``recall_source`` and catalogue metadata. The
    sources get the request's online state (``pipeline.user_state``), so online clicks seed
    the personal ones.
    """

    produces = frozenset({"items", "recall_source", "recall_position", "catalog_position"}) | ITEM_META

    def __init__(
        self,
        catalog: Catalog,
        sources: Sequence[RecallSource],
        *,
        quotas: Mapping[str, int],
        max_candidates: int = 500,
    ) -> None:
        missing = [s.name for s in sources if s.name not in quotas]
        if missing:
            raise ValueError(f"RecallCandidates: no quota for sources {missing}")
        if max_candidates < 1:
            raise ValueError(f"RecallCandidates: max_candidates must be >= 1, got {max_candidates}")
        self.catalog = catalog
        self.sources = tuple(sources)
        self.quotas = dict(quotas)
        self.max_candidates = max_candidates

    def transform(self, batch: Batch) -> Batch:
        req = batch.request
        if req.candidates is not None:
            items = list(dict.fromkeys(req.candidates))[: self.max_candidates]
            sources = ["request"] * len(items)
            pos = self.catalog.positions(items)
        else:
            state = user_state(batch)
            lists = {
                s.name: s.recall(req.user_id, req.now, self.quotas[s.name], state=state) for s in self.sources
            }
            merged = merge_recall(lists, self.quotas, self.max_candidates)
            pos = np.array(merged.positions, dtype=np.int64)
            items = _gather(self.catalog.item_ids, pos) if len(pos) else []
            sources = list(merged.sources)
            if (pos < 0).any():  # a negative position counts from the end, as item_ids[p] does
                pos = self.catalog.positions(items)
        columns = {
            "recall_source": np.array(sources, dtype=object),
            "recall_position": np.arange(len(items), dtype=np.int64),
            "catalog_position": pos,
            **catalog_columns_at(self.catalog, pos),
        }
        return batch.with_items(items, columns)


class JoinFeatures(Operator):
    """Joins user, item and context features into the contract's model inputs (cold start -> defaults).

    With ``catalog`` (the one recall ran on), recall's ``catalog_position`` column goes to the
    joiner, which uses it when its store's rows are that catalogue's positions.
    """

    requires = frozenset({"items"})
    produces = frozenset({"model_inputs", "user_known", "item_known"})

    def __init__(self, joiner: FeatureJoiner, *, catalog: Catalog | None = None) -> None:
        self.joiner = joiner
        self.catalog = catalog

    def transform(self, batch: Batch) -> Batch:
        req = batch.request
        pos = batch.columns.get("catalog_position")
        inputs, user_known, item_known = self.joiner.join(
            req.user_id,
            batch.items,
            req.context,
            now=req.now,
            state=user_state(batch),
            positions=(self.catalog, pos) if self.catalog is not None and pos is not None else None,
        )
        return batch.with_columns(item_known=item_known).with_values(
            model_inputs=inputs, model_items=batch.items, user_known=user_known
        )


class ScoreCandidates(Operator):
    """Scores every candidate in one scorer call; falls back when the scorer fails, is slow or is shut off.

    The fallback keeps the recall order (``fallback=None``) or uses another scorer (e.g. the
    local popularity model). The breaker, when given, is consulted before each call and told
    the outcome. The call's timeout is the smaller of ``timeout_s`` and the time left before
    the request's deadline minus ``reserve_s`` (kept for the rest of the pipeline).

    Produces ``model_score`` (float32, NaN when degraded), ``rank_score`` (what rerank adjusts)
    and the values ``degraded``, ``degraded_reason``, ``scores`` (in model-input row order) and
    ``served_by`` (the model name and version that answered; None when degraded or not reported).
    """

    requires = frozenset({"model_inputs", "recall_position"})
    produces = frozenset({"model_score", "rank_score", "degraded", "degraded_reason", "scores", "served_by"})

    def __init__(
        self,
        scorer: Scorer,
        *,
        breaker: CircuitBreaker | None = None,
        fallback: Scorer | None = None,
        timeout_s: float = 1.0,
        reserve_s: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0 or reserve_s < 0:
            raise ValueError(
                f"ScoreCandidates: need timeout_s > 0 and reserve_s >= 0, got {timeout_s}, {reserve_s}"
            )
        self.scorer = scorer
        self.breaker = breaker
        self.fallback = fallback
        self.timeout_s = timeout_s
        self.reserve_s = reserve_s
        self.clock = clock

    def _admit(self, batch: Batch) -> tuple[float | None, str | None]:
        """The call's timeout, or why the model must not be called: deadline, circuit_open."""
        deadline = batch.request.deadline
        timeout = self.timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - self.clock() - self.reserve_s)
            if timeout <= 0:
                return None, "deadline"
        if self.breaker is not None and not self.breaker.allow():
            return None, "circuit_open"
        return timeout, None

    def _record(self, exc: BaseException | None) -> None:
        """Tell the breaker how the call went; it decides what counts (``CircuitBreaker.record``)."""
        if self.breaker is not None:
            self.breaker.record(exc)

    def attempt(self, batch: Batch) -> tuple[ScoringResult | None, str | None]:
        """One scorer call (admitted by the deadline and the breaker, its outcome recorded): the
        result, or why there is none. :meth:`finish` turns either into the batch's scores."""
        timeout, reason = self._admit(batch)
        if reason is not None:
            return None, reason
        inputs, items = batch.values["model_inputs"], batch.items
        try:
            score_result = getattr(self.scorer, "score_result", None)
            result = (
                score_result(inputs, items, timeout=timeout)
                if score_result is not None
                else ScoringResult(self.scorer.score(inputs, items, timeout=timeout), None)
            )
        except ScoringError as exc:
            self._record(exc)
            return None, exc.reason
        except BaseException as exc:
            self._record(exc)
            raise
        self._record(None)
        return result, None

    async def attempt_async(self, batch: Batch) -> tuple[ScoringResult | None, str | None]:
        """:meth:`attempt` awaiting the scorer."""
        timeout, reason = self._admit(batch)
        if reason is not None:
            return None, reason
        inputs, items = batch.values["model_inputs"], batch.items
        try:
            score_result = getattr(self.scorer, "score_result_async", None)
            result = (
                await score_result(inputs, items, timeout=timeout)
                if score_result is not None
                else ScoringResult(
                    await self.scorer.score_async(inputs, items, timeout=timeout),  # type: ignore[attr-defined]
                    None,
                )
            )
        except ScoringError as exc:
            self._record(exc)
            return None, exc.reason
        except BaseException as exc:
            self._record(exc)
            raise
        self._record(None)
        return result, None

    def transform(self, batch: Batch) -> Batch:
        result, reason = self.attempt(batch) if len(batch) else (EMPTY_RESULT, None)
        return self.finish(batch, result, reason)

    async def transform_async(self, batch: Batch) -> Batch:
        """:meth:`transform` awaiting the scorer (used when it has ``score_async``)."""
        if not getattr(self.scorer, "supports_async", False):
            return self.transform(batch)
        result, reason = await self.attempt_async(batch) if len(batch) else (EMPTY_RESULT, None)
        return self.finish(batch, result, reason)

    def finish(self, batch: Batch, result: ScoringResult | None, reason: str | None) -> Batch:
        n = len(batch)
        if result is not None:
            model = np.asarray(result.scores, dtype=np.float32)
            return batch.with_columns(model_score=model, rank_score=model.astype(np.float64)).with_values(
                degraded=False, degraded_reason=None, scores=model, served_by=result.served_by
            )
        if self.fallback is not None:
            rank = self.fallback.score(batch.values["model_inputs"], batch.items).astype(np.float64)
        else:  # recall order: earlier recalled ranks higher
            rank = 1.0 / (1.0 + batch.columns["recall_position"].astype(np.float64))
        return batch.with_columns(model_score=np.full(n, np.nan, np.float32), rank_score=rank).with_values(
            degraded=True, degraded_reason=reason, scores=None, served_by=None
        )


class OrderByScore(Operator):
    """Sorts by ``rank_score`` (descending, ties keep the current order).

    With ``record_position`` it also stamps ``pre_rerank_position``: the model's ranking that
    the operator rules then change.
    """

    requires = frozenset({"rank_score"})

    def __init__(self, *, record_position: bool = False) -> None:
        self.record_position = record_position
        self.produces = frozenset({"pre_rerank_position"}) if record_position else frozenset()

    @property
    def name(self) -> str:
        return "OrderByModelScore" if self.record_position else "OrderByScore"

    def transform(self, batch: Batch) -> Batch:
        order = np.argsort(-batch.columns["rank_score"], kind="stable")
        out = batch.take(order)
        if self.record_position:
            out = out.with_columns(pre_rerank_position=np.arange(len(out), dtype=np.int64))
        return out


class TruncateToK(Operator):
    """Keeps the first ``request.k`` items."""

    requires = frozenset({"items"})

    def transform(self, batch: Batch) -> Batch:
        return batch.take(np.arange(min(batch.request.k, len(batch))))

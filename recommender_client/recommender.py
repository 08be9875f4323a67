"""The recommender: recall -> features -> score -> operator rules, wired from artefacts and rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from recommender_client.breaker import CircuitBreaker
from recommender_client.features import FeatureJoiner, InMemoryFeatureStore
from recommender_client.pipeline import Batch, Operator, Pipeline, RankRequest, StageObserver
from recommender_client.propensity import RecordExploration, propensities
from recommender_client.ranking import Scorer
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.recall.sources import (
    CategoryPopularityRecall,
    ItemCFRecall,
    NewItemRecall,
    PopularityRecall,
    RecallSource,
    user_history,
)
from recommender_client.rerank.exposure import ExposureLog, InMemoryExposureLog
from recommender_client.rerank.operators import InsertExploration
from recommender_client.rerank.reload import RuleBook
from recommender_client.rerank.rules import RuleSet, build_operators
from recommender_client.served_log import ServedItem, ServedLog
from recommender_client.stages import (
    JoinFeatures,
    OrderByScore,
    RecallCandidates,
    ScoreCandidates,
    TruncateToK,
)
from training.features import FeatureContract

EMPTY_RULES = RuleSet(rules=(), digest="none")


@dataclass(frozen=True)
class RecallConfig:
    """Per-source quotas (items each source may contribute) and the candidate cap."""

    quotas: Mapping[str, int]
    max_candidates: int = 500
    itemcf_seeds: int = 20
    top_categories: int = 3
    new_item_days: float = 3.0


def default_sources(artifacts: RecallArtifacts, config: RecallConfig) -> list[RecallSource]:
    """The sources in merge order: personal ones first, popularity last as the backfill."""
    return [
        ItemCFRecall(artifacts, seeds=config.itemcf_seeds),
        CategoryPopularityRecall(artifacts, top_categories=config.top_categories),
        NewItemRecall(artifacts, max_age_days=config.new_item_days),
        PopularityRecall(artifacts),
    ]


class Recommender:
    """Runs one pipeline per request; the rerank part is rebuilt whenever the rules change.

    Args:
        contract: the feature contract the model serves.
        artifacts: offline recall artefacts (also the default feature store and the seen history).
        scorer: the model (TF Serving through the client, or a local scorer).
        recall: quotas and limits.
        rules: the hot-reloaded rules; ``None`` runs without operator rules.
        breaker: stops calling the scorer after repeated failures.
        fallback: scorer used when the model is unavailable (``None``: recall order).
        exposures: impressions log for frequency caps (served items are recorded here).
        record_served: count every served item as an impression (``False`` when the clients'
            impression events are what counts: ``RANKER_IMPRESSIONS_FROM=events``).
        served_log: sampled log of served lists with the model inputs sent (training joins, skew).
        predict_timeout_s: upper bound on one scoring call.
        model_name: the model asked for (the answer's own name and version are what is logged).
    """

    def __init__(
        self,
        *,
        contract: FeatureContract,
        artifacts: RecallArtifacts,
        scorer: Scorer,
        recall: RecallConfig,
        rules: RuleBook | None = None,
        breaker: CircuitBreaker | None = None,
        fallback: Scorer | None = None,
        exposures: ExposureLog | None = None,
        served_log: ServedLog | None = None,
        record_served: bool = True,
        predict_timeout_s: float = 1.0,
        model_name: str = "model",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.contract = contract
        self.artifacts = artifacts
        self.scorer = scorer
        self.rules = rules
        self.breaker = breaker
        self.exposures = exposures if exposures is not None else InMemoryExposureLog()
        self.served_log = served_log
        self.record_served = record_served
        self.model_name = model_name
        self._head: list[Operator] = [
            RecallCandidates(
                artifacts.catalog,
                default_sources(artifacts, recall),
                quotas=recall.quotas,
                max_candidates=recall.max_candidates,
            ),
            JoinFeatures(FeatureJoiner(contract, InMemoryFeatureStore.from_artifacts(artifacts))),
            ScoreCandidates(
                scorer, breaker=breaker, fallback=fallback, timeout_s=predict_timeout_s, clock=clock
            ),
            OrderByScore(record_position=True),
        ]
        self._lock = threading.Lock()
        self._built: tuple[str, Pipeline] | None = None

    def seen(self, user_id: str) -> tuple[Sequence[str], np.ndarray]:
        """The user's logged items and their times (the seen filter's history)."""
        items, times, _ = user_history(self.artifacts, user_id)
        ids = self.artifacts.catalog.item_ids
        positions = items.tolist()
        if len(positions) > 1:  # itemgetter: one C call instead of a Python loop per event
            return list(itemgetter(*positions)(ids)), times
        return [ids[i] for i in positions], times

    def current_rules(self) -> RuleSet:
        return self.rules.current() if self.rules is not None else EMPTY_RULES

    def pipeline(self) -> tuple[RuleSet, Pipeline]:
        """The pipeline for the rules in force (rebuilt and re-checked only when they change)."""
        ruleset = self.current_rules()
        with self._lock:
            if self._built is None or self._built[0] != ruleset.digest:
                rerank = [
                    RecordExploration(op) if isinstance(op, InsertExploration) else op
                    for op in build_operators(
                        ruleset, catalog=self.artifacts.catalog, seen=self.seen, exposures=self.exposures
                    )
                ]
                self._built = (ruleset.digest, Pipeline([*self._head, *rerank, TruncateToK()]))
            return ruleset, self._built[1]

    def recommend(
        self, request: RankRequest, *, observe: StageObserver | None = None
    ) -> tuple[Batch, RuleSet]:
        """Rank for one request; records the served items as exposures and maybe logs skew."""
        ruleset, pipeline = self.pipeline()
        batch = pipeline.run(Batch(request), observe=observe)
        return self._served(request, batch, ruleset), ruleset

    @property
    def supports_async(self) -> bool:
        """Whether :meth:`recommend_async` awaits the model (the scorer has an async client)."""
        return bool(getattr(self.scorer, "supports_async", False))

    async def recommend_async(
        self, request: RankRequest, *, observe: StageObserver | None = None
    ) -> tuple[Batch, RuleSet]:
        """:meth:`recommend` on an event loop: only the model call is awaited."""
        ruleset, pipeline = self.pipeline()
        batch = await pipeline.run_async(Batch(request), observe=observe)
        return self._served(request, batch, ruleset), ruleset

    def _served(self, request: RankRequest, batch: Batch, ruleset: RuleSet) -> Batch:
        """Record the exposures of a ranked batch, stamp its propensities and maybe log it."""
        if self.record_served:
            self.exposures.record(request.user_id, batch.items, request.now)
        pins = {r.name for r in ruleset.rules if r.type == "pin"}
        pinned = [item for item, notes in zip(batch.items, batch.rules, strict=True) if pins & set(notes)]
        batch = batch.with_columns(propensity=propensities(batch, pinned))
        log = self.served_log
        if log is not None and log.sampled(request.request_id):
            self._log(log, request, batch, ruleset)
        return batch

    def _log(self, log: ServedLog, request: RankRequest, batch: Batch, ruleset: RuleSet) -> None:
        rows = {item: k for k, item in enumerate(batch.values.get("model_items", ()))}
        scores, props = batch.columns["model_score"], batch.columns["propensity"]
        served_by = batch.values.get("served_by")
        log.write(
            request_id=request.request_id,
            timestamp=request.now,
            user_id=request.user_id,
            model_name=served_by.model_name if served_by is not None else None,
            model_version=served_by.version if served_by is not None else None,
            items=[
                ServedItem(item, pos, float(scores[pos]), float(props[pos]), rows.get(item))
                for pos, item in enumerate(batch.items)
            ],
            inputs=batch.values.get("model_inputs"),
            degraded=bool(batch.values.get("degraded", False)),
            rules_version=ruleset.digest,
        )

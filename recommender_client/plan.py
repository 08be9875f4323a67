"""What a request runs: the stages built from one artefact set, and the rerank built for the rules."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from recommender_client.breaker import CircuitBreaker
from recommender_client.experiment_scoring import ExperimentArms
from recommender_client.features import FeatureJoiner, InMemoryFeatureStore
from recommender_client.pipeline import USER_STATE, Operator, Pipeline
from recommender_client.propensity import RecordExploration
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
from recommender_client.rerank.exposure import ExposureLog
from recommender_client.rerank.operators import CapFrequency, InsertExploration
from recommender_client.rerank.rules import RuleSet, build_operators
from recommender_client.stages import (
    JoinFeatures,
    OrderByScore,
    RecallCandidates,
    ScoreCandidates,
    TruncateToK,
)
from training.features import FeatureContract


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


@dataclass(frozen=True)
class Loaded:
    """One artefact set with the stages built from it; swapped as a whole on reload."""

    artifacts: RecallArtifacts
    head: tuple[Operator, ...]
    generation: int


@dataclass(frozen=True)
class Plan:
    """What one request runs: the rules, the pipeline built for them and one artefact set.

    ``window_s`` is the longest frequency-cap period of the rules (None without caps): how
    far back the request's online-state snapshot reads impressions.
    """

    ruleset: RuleSet
    pipeline: Pipeline
    loaded: Loaded
    window_s: float | None

    def impressions_since(self, now: float) -> float:
        return now - self.window_s if self.window_s is not None else math.inf


def history_ids(artifacts: RecallArtifacts, user_id: str) -> tuple[Sequence[str], np.ndarray]:
    """The user's logged items and their times in the artefacts (the seen filter's offline part)."""
    items, times, _ = user_history(artifacts, user_id)
    ids = artifacts.catalog.item_ids
    positions = items.tolist()
    if len(positions) > 1:  # itemgetter: one C call instead of a Python loop per event
        return list(itemgetter(*positions)(ids)), times
    return [ids[i] for i in positions], times


def load_stages(
    artifacts: RecallArtifacts,
    *,
    contract: FeatureContract,
    scorer: Scorer,
    recall: RecallConfig,
    breaker: CircuitBreaker | None,
    fallback: Scorer | None,
    predict_timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    generation: int = 0,
    arms: ExperimentArms | None = None,
) -> Loaded:
    """The stages that read ``artifacts`` (recall, the feature join) and score, built once per set.

    Building checks the set against the contract (``FeatureJoiner`` refuses stored values that
    do not fit), so a set that cannot serve fails here, before it replaces anything. With
    ``arms`` (a running experiment) each user's arm picks the model (``ScoreExperiment``).
    """
    score: Operator = (
        arms.stage(fallback=fallback, timeout_s=predict_timeout_s, clock=clock)
        if arms is not None
        else ScoreCandidates(
            scorer, breaker=breaker, fallback=fallback, timeout_s=predict_timeout_s, clock=clock
        )
    )
    head: tuple[Operator, ...] = (
        RecallCandidates(
            artifacts.catalog,
            default_sources(artifacts, recall),
            quotas=recall.quotas,
            max_candidates=recall.max_candidates,
        ),
        JoinFeatures(
            FeatureJoiner(contract, InMemoryFeatureStore.from_artifacts(artifacts)), catalog=artifacts.catalog
        ),
        score,
        OrderByScore(record_position=True),
    )
    return Loaded(artifacts, head, generation)


def build_plan(ruleset: RuleSet, loaded: Loaded, *, exposures: ExposureLog) -> Plan:
    """The whole pipeline for ``ruleset`` over one artefact set, checked at construction."""
    artifacts = loaded.artifacts
    rerank = [
        RecordExploration(op) if isinstance(op, InsertExploration) else op
        for op in build_operators(
            ruleset,
            catalog=artifacts.catalog,
            seen=lambda user_id: history_ids(artifacts, user_id),
            exposures=exposures,
        )
    ]
    window = max((op.period_s for op in rerank if isinstance(op, CapFrequency)), default=None)
    pipeline = Pipeline([*loaded.head, *rerank, TruncateToK()], provided={USER_STATE})
    return Plan(ruleset, pipeline, loaded, window)

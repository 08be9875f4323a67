"""Scoring under an experiment: each user's arm picks the model, a failing canary falls back to stable."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from recommender_client.breaker import CircuitBreaker
from recommender_client.experiments import Arm, Assigner, Experiment
from recommender_client.pipeline import Batch, Operator
from recommender_client.ranking import Scorer, ScoringResult, ServingScorer
from recommender_client.stages import EMPTY_RESULT, ScoreCandidates

# Why an arm's model could not answer that says the model (not the request) is missing: the
# version or label is not served (NOT_FOUND), the server is unreachable, or the arm's breaker
# is open. A timeout or a deadline is not among them: the stable arm would get even less time.
FALLBACK_REASONS = frozenset({"model_not_found", "unavailable", "circuit_open"})


class PinnedSpec:
    """A TF Serving client whose every Predict asks for one version or version label.

    Everything else (status, metadata, close) is the wrapped client's; the arm's scorer shares
    the service's channels, retry budget and connection pool.
    """

    def __init__(self, client: Any, *, version: int | None, version_label: str | None) -> None:
        self._client = client
        self._spec = {"version": version, "version_label": version_label}

    def predict(self, inputs: Any, **kwargs: Any) -> Any:
        """The wrapped client's predict (a coroutine for an async client) with the arm's spec."""
        return self._client.predict(inputs, **kwargs, **self._spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def scorer_for(scorer: Scorer, arm: Arm) -> Scorer:
    """The scorer of one arm: ``scorer`` itself for an arm asking for the default model, else a
    copy asking for the arm's ``model_spec`` (name, and version or label).

    Only the default model reports served versions to the model check, which watches the
    service's one model: an arm on version 2 beside one on version 1 would wake it on every answer.

    Raises:
        ValueError: the arm selects a model and ``scorer`` is not a TF Serving scorer (a local
            scorer has one model).
    """
    if arm.selects_default:
        return scorer
    if not isinstance(scorer, ServingScorer):
        raise ValueError(
            f"arm {arm.name!r} selects a served model but the scorer is a {type(scorer).__name__}, "
            "which serves one model"
        )
    out = copy.copy(scorer)
    out.model_name = arm.model_name or scorer.model_name
    out.on_served = None
    if arm.version is not None or arm.version_label is not None:
        out.client = PinnedSpec(scorer.client, version=arm.version, version_label=arm.version_label)
        if scorer.async_client is not None:
            out.async_client = PinnedSpec(
                scorer.async_client, version=arm.version, version_label=arm.version_label
            )
    return out


class ExperimentArms:
    """The running experiment's assignment and, per arm, its scorer and circuit breaker.

    Built once per process (the breakers must outlive artefact reloads); :meth:`stage` builds
    the scoring stage for each artefact set. The stable arm keeps the service's own breaker,
    so without failures on the other arms everything behaves as without the experiment.
    """

    def __init__(
        self,
        experiment: Experiment,
        scorer: Scorer,
        *,
        breaker: CircuitBreaker | None,
        new_breaker: Callable[[], CircuitBreaker | None] = lambda: None,
    ) -> None:
        self.experiment = experiment
        self.assigner = Assigner(experiment)
        self.scorers = {arm.name: scorer_for(scorer, arm) for arm in experiment.arms}
        self.breakers = {
            arm.name: breaker if arm.name == experiment.stable else new_breaker() for arm in experiment.arms
        }

    def stage(
        self,
        *,
        fallback: Scorer | None,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> ScoreExperiment:
        stages = {
            name: ScoreCandidates(
                scorer, breaker=self.breakers[name], fallback=fallback, timeout_s=timeout_s, clock=clock
            )
            for name, scorer in self.scorers.items()
        }
        return ScoreExperiment(self.assigner, stages)


class ScoreExperiment(Operator):
    """``ScoreCandidates`` for the user's arm; a non-stable arm whose model is missing
    (:data:`FALLBACK_REASONS`) is retried once on the stable arm, within the same deadline.

    Produces what ``ScoreCandidates`` does plus the values ``experiment``, ``arm`` (assigned),
    ``served_arm`` (whose model scored the list; None when degraded) and ``arm_errors``
    (``(arm, reason)`` of every arm call that failed, a rescued canary's included). Its stage
    name stays ``ScoreCandidates``, so the stage latency series continue across experiments.
    """

    requires = ScoreCandidates.requires
    produces = ScoreCandidates.produces | frozenset({"experiment", "arm", "served_arm", "arm_errors"})

    def __init__(self, assigner: Assigner, stages: Mapping[str, ScoreCandidates]) -> None:
        self.assigner = assigner
        self.stages = dict(stages)
        self.stable = assigner.experiment.stable_arm.name

    @property
    def name(self) -> str:
        return "ScoreCandidates"

    def _order(self, batch: Batch) -> list[str]:
        arm = self.assigner.assign(batch.request.user_id).name
        return [arm] if arm == self.stable else [arm, self.stable]

    def transform(self, batch: Batch) -> Batch:
        order = self._order(batch)
        errors: list[tuple[str, str]] = []
        result: ScoringResult | None
        reason: str | None
        for name in order:
            result, reason = self.stages[name].attempt(batch) if len(batch) else (EMPTY_RESULT, None)
            if self._settled(name, result, reason, errors):
                break
        return self._finish(batch, order, name, result, reason, errors)

    async def transform_async(self, batch: Batch) -> Batch:
        """:meth:`transform` awaiting the scorers that have an async client."""
        order = self._order(batch)
        errors: list[tuple[str, str]] = []
        result: ScoringResult | None
        reason: str | None
        for name in order:
            stage = self.stages[name]
            if not len(batch):
                result, reason = EMPTY_RESULT, None
            elif getattr(stage.scorer, "supports_async", False):
                result, reason = await stage.attempt_async(batch)
            else:
                result, reason = stage.attempt(batch)
            if self._settled(name, result, reason, errors):
                break
        return self._finish(batch, order, name, result, reason, errors)

    def _settled(
        self, name: str, result: ScoringResult | None, reason: str | None, errors: list[tuple[str, str]]
    ) -> bool:
        """Whether the attempt on arm ``name`` ends the request (scored, or a failure the stable
        arm would not cure)."""
        if result is not None:
            return True
        errors.append((name, str(reason)))
        return reason not in FALLBACK_REASONS

    def _finish(
        self,
        batch: Batch,
        order: list[str],
        name: str,
        result: ScoringResult | None,
        reason: str | None,
        errors: list[tuple[str, str]],
    ) -> Batch:
        out = self.stages[name].finish(batch, result, reason)
        return out.with_values(
            experiment=self.assigner.experiment.name,
            arm=order[0],
            served_arm=name if result is not None else None,
            arm_errors=tuple(errors),
        )

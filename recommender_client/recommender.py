"""The recommender: recall -> features -> score -> operator rules, wired from artefacts and rules."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from recommender_client.breaker import CircuitBreaker
from recommender_client.experiment_scoring import ExperimentArms
from recommender_client.pipeline import USER_STATE, Batch, Pipeline, RankRequest, StageObserver
from recommender_client.plan import Loaded, Plan, RecallConfig, build_plan, history_ids, load_stages
from recommender_client.propensity import propensities
from recommender_client.ranking import Scorer
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.rerank.reload import RuleBook
from recommender_client.rerank.rules import RuleSet
from recommender_client.served_log import ServedItem, ServedLog
from recommender_client.state.memory import InProcessState
from recommender_client.state.protocol import EMPTY_STATE, OnlineState, UserState
from training.features import FeatureContract

__all__ = ["RecallConfig", "Recommender"]

log = logging.getLogger(__name__)
EMPTY_RULES = RuleSet(rules=(), digest="none")


class Recommender:
    """Runs one pipeline per request; the rerank part is rebuilt whenever the rules change.

    Each request reads the user's online state once (``OnlineState.snapshot``: clicks and the
    impressions within the longest frequency-cap period) and puts it in the batch
    (``pipeline.USER_STATE``), where the seen filter, the frequency caps, the pins' admission
    check and the personal recall sources read it.

    Impressions count once, from one source (``record_served``): with ``True``
    (``RANKER_IMPRESSIONS_FROM=served``) every served item is recorded as an impression when
    the answer is final, and impression events posted to /events are only logged (for the
    training join), never applied; with ``False`` (``events``) the served lists are not
    recorded and only the impression events count. Clicks always come from /events.

    Args:
        contract: the feature contract the model serves.
        artifacts: offline recall artefacts (also the default feature store and the seen history);
            replaced without a restart by :meth:`swap_artifacts`.
        scorer: the model (TF Serving through the client, or a local scorer).
        recall: quotas and limits.
        rules: the hot-reloaded rules; ``None`` runs without operator rules.
        breaker: stops calling the scorer after repeated failures.
        fallback: scorer used when the model is unavailable (``None``: recall order).
        online_state: the per-user impressions and clicks (default: in process, over
            ``exposures``); shared by every replica when it is a remote store.
        exposures: the in-process log behind the default ``online_state``.
        record_served: count every served item as an impression (see above).
        served_log: sampled log of served lists with the model inputs sent (training joins, skew).
        predict_timeout_s: upper bound on one scoring call.
        model_name: the model asked for (the answer's own name and version are what is logged).
        arms: the running experiment (per-arm scorers and breakers, the stable arm's being
            ``breaker``); ``None``: every request is scored by ``scorer``.
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
        online_state: OnlineState | None = None,
        exposures: InMemoryExposureLog | None = None,
        served_log: ServedLog | None = None,
        record_served: bool = True,
        predict_timeout_s: float = 1.0,
        model_name: str = "model",
        clock: Callable[[], float] = time.monotonic,
        arms: ExperimentArms | None = None,
    ) -> None:
        self.contract = contract
        self.scorer = scorer
        self.rules = rules
        self.breaker = breaker
        if online_state is None:
            online_state = InProcessState(exposures)
        self.online_state: OnlineState = online_state
        # the in-process log the blocking path and the metrics read (a remote store has none)
        log_ = getattr(online_state, "log", None)
        self.exposures: InMemoryExposureLog | None = log_ if isinstance(log_, InMemoryExposureLog) else None
        self.served_log = served_log
        self.record_served = record_served
        self.model_name = model_name
        self.arms = arms
        # calls to the online state that raised, by kind (a store that handles its own
        # failures, as RedisState does, counts them itself and never raises)
        self.state_failures = {"read": 0, "record": 0}
        self._recall = recall
        self._predict_timeout_s = predict_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._built: Plan | None = None
        self._loaded = self._load(artifacts, fallback, generation=0)

    def _load(self, artifacts: RecallArtifacts, fallback: Scorer | None, *, generation: int) -> Loaded:
        return load_stages(
            artifacts,
            contract=self.contract,
            scorer=self.scorer,
            recall=self._recall,
            breaker=self.breaker,
            fallback=fallback,
            predict_timeout_s=self._predict_timeout_s,
            clock=self._clock,
            generation=generation,
            arms=self.arms,
        )

    @property
    def artifacts(self) -> RecallArtifacts:
        """The artefact set in force."""
        return self._loaded.artifacts

    def swap_artifacts(self, artifacts: RecallArtifacts, *, fallback: Scorer | None) -> None:
        """Serve from ``artifacts`` from now on; everything is built before the swap.

        A failure building the stages (e.g. features that do not fit the contract) raises here
        and leaves the set in force untouched. Requests already running finish on the set
        they started with (a plan holds its own).
        """
        loaded = self._load(artifacts, fallback, generation=self._loaded.generation + 1)
        plan = self._plan_for(self.current_rules(), loaded)
        with self._lock:
            self._loaded, self._built = loaded, plan

    def seen(self, user_id: str) -> tuple[Sequence[str], np.ndarray]:
        """The user's logged items and their times (the seen filter's offline history)."""
        return history_ids(self.artifacts, user_id)

    def current_rules(self) -> RuleSet:
        return self.rules.current() if self.rules is not None else EMPTY_RULES

    def _plan_for(self, ruleset: RuleSet, loaded: Loaded) -> Plan:
        # without an in-process log the caps count only in the request's snapshot, which the
        # recommender always provides; the empty log stands in for build_operators' argument
        exposures = self.exposures if self.exposures is not None else InMemoryExposureLog()
        return build_plan(ruleset, loaded, exposures=exposures)

    def plan(self) -> Plan:
        """The plan for the rules and artefacts in force (rebuilt and re-checked only when they change)."""
        ruleset = self.current_rules()
        with self._lock:
            built, loaded = self._built, self._loaded
            if built is None or built.ruleset.digest != ruleset.digest or built.loaded is not loaded:
                built = self._built = self._plan_for(ruleset, loaded)
            return built

    def pipeline(self) -> tuple[RuleSet, Pipeline]:
        """The rules in force and the pipeline built for them."""
        plan = self.plan()
        return plan.ruleset, plan.pipeline

    def recommend(
        self, request: RankRequest, *, observe: StageObserver | None = None
    ) -> tuple[Batch, RuleSet]:
        """Rank for one request on the blocking path (offline runs, tests): in-process state only."""
        state = self.online_state
        if not isinstance(state, InProcessState):
            raise TypeError(
                f"Recommender.recommend reads the in-process state; with {type(state).__name__} use "
                "recommend_async"
            )
        plan = self.plan()
        snapshot = state.log.read(request.user_id, impressions_since=plan.impressions_since(request.now))
        batch = plan.pipeline.run(Batch(request, values={USER_STATE: snapshot}), observe=observe)
        batch = self._served(request, batch, plan.ruleset)
        if self.record_served:
            state.log.record(request.user_id, batch.items, request.now)
        return batch, plan.ruleset

    @property
    def supports_async(self) -> bool:
        """Whether :meth:`recommend_async` awaits the model (the scorer has an async client)."""
        return bool(getattr(self.scorer, "supports_async", False))

    async def recommend_async(
        self, request: RankRequest, *, observe: StageObserver | None = None
    ) -> tuple[Batch, RuleSet]:
        """Rank for one request on an event loop (what /recommend runs).

        The online state is read once before the stages run and the served items are recorded
        after the list is final, both awaited. With an async scorer only the model call is
        awaited (the CPU stages take ~1 ms, less than a thread hand-off); a blocking scorer
        runs the pipeline in a worker thread.
        """
        plan = self.plan()
        snapshot = await self._snapshot(request.user_id, plan.impressions_since(request.now))
        batch = Batch(request, values={USER_STATE: snapshot})
        if self.supports_async:
            batch = await plan.pipeline.run_async(batch, observe=observe)
        else:
            batch = await asyncio.to_thread(plan.pipeline.run, batch, observe=observe)
        batch = self._served(request, batch, plan.ruleset)
        if self.record_served and batch.items:
            try:
                await self.online_state.record_impressions(request.user_id, batch.items, request.now)
            except Exception as exc:
                self._state_failed("record", exc)
        return batch, plan.ruleset

    async def _snapshot(self, user_id: str, since: float) -> UserState:
        """The user's online state; a store that fails answers empty (no seen or caps from it)
        rather than failing the request: the ranker answers whatever its dependencies do."""
        try:
            return await self.online_state.snapshot(user_id, impressions_since=since)
        except Exception as exc:
            self._state_failed("read", exc)
            return EMPTY_STATE

    def _state_failed(self, op: str, exc: Exception) -> None:
        self.state_failures[op] += 1
        count = self.state_failures[op]
        if count == 1 or count % 1000 == 0:  # a store that is down fails every request
            log.warning("online state %s failed (%d so far): %r", op, count, exc)

    def _served(self, request: RankRequest, batch: Batch, ruleset: RuleSet) -> Batch:
        """Stamp a ranked batch's propensities and maybe log it."""
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
            experiment=batch.values.get("experiment"),
            arm=batch.values.get("arm"),
            served_arm=batch.values.get("served_arm"),
        )

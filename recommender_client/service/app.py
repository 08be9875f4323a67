"""The app factory: everything the service needs is built in the lifespan and kept on app.state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from recommender_client.breaker import CircuitBreaker
from recommender_client.experiment_scoring import ExperimentArms
from recommender_client.experiments import load_experiments
from recommender_client.ranking import LocalScorer, Scorer
from recommender_client.recall.artifacts import RecallArtifacts, load_artifacts
from recommender_client.recall.reload import ArtifactWatch
from recommender_client.recommender import RecallConfig, Recommender
from recommender_client.rerank.reload import RuleBook
from recommender_client.served_log import ServedLog
from recommender_client.service.events import EventSink, events_log
from recommender_client.service.events import router as events_router
from recommender_client.service.intake import Intake
from recommender_client.service.metrics import ServiceMetrics
from recommender_client.service.routes import router
from recommender_client.service.scoring import ModelSide, build_model_side
from recommender_client.service.settings import Settings
from recommender_client.state.factory import build_online_state
from recommender_client.state.protocol import OnlineState
from training.features import Entity, FeatureContract

log = logging.getLogger(__name__)


def build_recommender(
    settings: Settings,
    scorer: Scorer,
    *,
    served_log: ServedLog | None = None,
    online_state: OnlineState | None = None,
    artifacts: RecallArtifacts | None = None,
) -> Recommender:
    """Load the contract, artefacts and rules and wire the pipeline around ``scorer``.

    ``online_state`` is the store of users' impressions and clicks; by default the one the
    settings ask for (``state_backend``: in this process, or Redis). ``artifacts``: already
    loaded (by the lifespan's ``ArtifactWatch``); by default read from ``artifacts_dir``.
    The experiments file, when set, is read here: a broken one stops the start-up
    (``ExperimentError`` naming each fault's location).
    """
    assert settings.contract_path is not None
    contract = FeatureContract.load(settings.contract_path)
    context = contract.by_entity(Entity.CONTEXT)
    if len(context) > settings.max_context_keys:
        raise ValueError(
            f"the feature contract has {len(context)} context features, more than max_context_keys="
            f"{settings.max_context_keys}: raise RANKER_MAX_CONTEXT_KEYS to at least {len(context)}"
        )
    if artifacts is None:
        artifacts = load_artifacts(settings.artifacts_dir)
    rules = (
        RuleBook(settings.rules_path, min_interval_s=settings.rules_reload_interval_s)
        if settings.rules_path is not None
        else None
    )
    breaker = new_breaker(settings)
    experiment = load_experiments(settings.experiments_path) if settings.experiments_path else None
    arms = (
        ExperimentArms(experiment, scorer, breaker=breaker, new_breaker=lambda: new_breaker(settings))
        if experiment is not None
        else None
    )
    return Recommender(
        contract=contract,
        artifacts=artifacts,
        scorer=scorer,
        recall=RecallConfig(
            quotas=settings.quotas(),
            max_candidates=settings.max_candidates,
            new_item_days=settings.new_item_days,
        ),
        rules=rules,
        breaker=breaker,
        fallback=fallback_for(settings, artifacts),
        online_state=online_state if online_state is not None else build_online_state(settings),
        served_log=served_log,
        record_served=settings.impressions_from == "served",
        predict_timeout_s=settings.predict_timeout_s,
        model_name=settings.model_name,
        arms=arms,
    )


def new_breaker(settings: Settings) -> CircuitBreaker:
    """A circuit breaker as the settings configure it (the service's, and one per extra arm)."""
    return CircuitBreaker(
        failure_threshold=settings.breaker_failure_threshold, cooldown_s=settings.breaker_cooldown_s
    )


def fallback_for(settings: Settings, artifacts: RecallArtifacts) -> Scorer | None:
    """The scorer answering while the model cannot (``None``: recall order), from these artefacts."""
    return LocalScorer(artifacts.popularity_of()) if settings.fallback == "popularity" else None


def served_log_for(settings: Settings) -> ServedLog | None:
    """The served-list log the settings ask for, started (its writer thread runs until close)."""
    if settings.served_log_path is None:
        return None
    return ServedLog(
        settings.served_log_path,
        rate=settings.served_log_sample_rate,
        max_bytes=settings.served_log_max_bytes,
        backups=settings.served_log_backups,
        queue_size=settings.served_log_queue,
    ).start()


def create_app(settings: Settings, *, scorer: Scorer | None = None) -> FastAPI:
    """Build the ranking service.

    Args:
        settings: the one configuration object.
        scorer: score with this instead of TF Serving (e.g. a ``LocalScorer`` for offline runs);
            by default a gRPC or REST client is created in the lifespan and closed at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.contract_path is not None  # the settings fill it in
        model_side: ModelSide | None = None
        if scorer is None:
            model_side = await build_model_side(settings, FeatureContract.load(settings.contract_path))
            active: Scorer = model_side.scorer
        else:
            active = scorer
        served_log = served_log_for(settings)
        event_log = events_log(settings)
        online_state = build_online_state(settings)  # on this loop: a Redis client binds to it
        watch: ArtifactWatch | None = None
        try:
            app.state.settings = settings
            app.state.metrics = ServiceMetrics()
            app.state.intake = Intake(settings)
            watch = ArtifactWatch(
                settings.artifacts_dir,
                swap=lambda new: recommender.swap_artifacts(new, fallback=fallback_for(settings, new)),
                poll_interval_s=settings.artifacts_poll_interval_s,
            )
            recommender = app.state.recommender = build_recommender(
                settings, active, served_log=served_log, online_state=online_state, artifacts=watch.load()
            )
            app.state.artifact_watch = watch
            watch.start()
            app.state.events = EventSink(settings, app.state.recommender.online_state, log=event_log)
            app.state.model_watch = model_side.watch if model_side is not None else None
            app.state.metrics.watch(app.state.recommender, app.state.model_watch, watch)
            log.info(
                "ranker ready: model %r over %s, artefacts %s",
                settings.model_name,
                settings.protocol,
                settings.artifacts_dir,
            )
            yield
        finally:
            if watch is not None:
                await watch.stop()
            for opened in (served_log, event_log):
                if opened is not None:
                    opened.close()
            await online_state.aclose()
            if model_side is not None:
                await model_side.close()

    app = FastAPI(title="recsys ranker", version="0.1.0", lifespan=lifespan)
    app.include_router(router)
    app.include_router(events_router)
    if settings.console.enabled:  # off by default: it can rewrite the rules every request obeys
        from recommender_client.console.pages import mount_console

        mount_console(app, settings)
    return app

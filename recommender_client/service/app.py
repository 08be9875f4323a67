"""The app factory: everything the service needs is built in the lifespan and kept on app.state."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from recommender_client.breaker import CircuitBreaker
from recommender_client.ranking import LocalScorer, Scorer, ServingScorer
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.recommender import RecallConfig, Recommender
from recommender_client.rerank.exposure import InMemoryExposureLog
from recommender_client.rerank.reload import RuleBook
from recommender_client.service.intake import Intake
from recommender_client.service.metrics import ServiceMetrics
from recommender_client.service.routes import router
from recommender_client.service.settings import Settings
from recommender_client.skew import SkewLogger
from training.features import Entity, FeatureContract

log = logging.getLogger(__name__)


def make_client(settings: Settings) -> object:
    """The TF Serving client the settings ask for (imported here: it is the only remote dependency)."""
    from recommender_client.client import GrpcClient, RestClient

    if settings.protocol == "grpc":
        return GrpcClient(target=settings.grpc_target, timeout=settings.predict_timeout_s)
    return RestClient(base_url=settings.rest_url, timeout=settings.predict_timeout_s)


def make_async_client(settings: Settings) -> Any:
    """The awaitable Predict client /recommend uses (gRPC on grpc.aio, REST on aiohttp).

    Must be called on the event loop that serves requests (both bind to it).
    """
    if settings.protocol == "grpc":
        from recommender_client.client.grpc_aio_client import AsyncGrpcClient

        return AsyncGrpcClient(target=settings.grpc_target, timeout=settings.predict_timeout_s)
    from recommender_client.client.rest_aio_client import AsyncRestClient

    return AsyncRestClient(base_url=settings.rest_url, timeout=settings.predict_timeout_s)


def build_recommender(settings: Settings, scorer: Scorer) -> Recommender:
    """Load the contract, artefacts and rules and wire the pipeline around ``scorer``."""
    assert settings.contract_path is not None
    contract = FeatureContract.load(settings.contract_path)
    context = contract.by_entity(Entity.CONTEXT)
    if len(context) > settings.max_context_keys:
        raise ValueError(
            f"the feature contract has {len(context)} context features, more than max_context_keys="
            f"{settings.max_context_keys}: raise RANKER_MAX_CONTEXT_KEYS to at least {len(context)}"
        )
    artifacts = load_artifacts(settings.artifacts_dir)
    rules = (
        RuleBook(settings.rules_path, min_interval_s=settings.rules_reload_interval_s)
        if settings.rules_path is not None
        else None
    )
    skew = (
        SkewLogger(
            settings.skew_log_path,
            rate=settings.skew_sample_rate,
            seed=settings.skew_seed,
            max_bytes=settings.skew_max_bytes,
            backups=settings.skew_backups,
        )
        if settings.skew_log_path is not None
        else None
    )
    fallback = LocalScorer(artifacts.popularity_of()) if settings.fallback == "popularity" else None
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
        breaker=CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold, cooldown_s=settings.breaker_cooldown_s
        ),
        fallback=fallback,
        exposures=InMemoryExposureLog(
            max_bytes=settings.exposure_max_bytes,
            ttl_s=settings.exposure_ttl_s,
            max_users=settings.exposure_max_users,
            max_events_per_user=settings.exposure_max_events_per_user,
        ),
        skew=skew,
        predict_timeout_s=settings.predict_timeout_s,
        model_name=settings.model_name,
    )


def create_app(settings: Settings, *, scorer: Scorer | None = None) -> FastAPI:
    """Build the ranking service.

    Args:
        settings: the one configuration object.
        scorer: score with this instead of TF Serving (e.g. a ``LocalScorer`` for offline runs);
            by default a gRPC or REST client is created in the lifespan and closed at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_scorer = scorer is None
        async_client = make_async_client(settings) if own_scorer else None
        active: Scorer = (
            scorer
            if scorer is not None
            else ServingScorer(
                make_client(settings),
                model_name=settings.model_name,
                signature_name=settings.signature_name,
                chunk_size=settings.predict_chunk_size,
                async_client=async_client,
            )
        )
        try:
            app.state.settings = settings
            app.state.metrics = ServiceMetrics()
            app.state.intake = Intake(settings)
            app.state.recommender = build_recommender(settings, active)
            app.state.metrics.watch(app.state.recommender)
            log.info(
                "ranker ready: model %r over %s, artefacts %s",
                settings.model_name,
                settings.protocol,
                settings.artifacts_dir,
            )
            yield
        finally:
            if own_scorer:
                active.close()
            if async_client is not None:
                await async_client.close()

    app = FastAPI(title="recsys ranker", version="0.1.0", lifespan=lifespan)
    app.include_router(router)
    return app

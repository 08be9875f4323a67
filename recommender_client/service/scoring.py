"""The service's model side, built from the settings: clients, retries, the scorer and the model check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender_client.client.base import RetryPolicy
from recommender_client.client.retry_budget import RetryBudget
from recommender_client.model_check import ModelWatch
from recommender_client.ranking import ServingScorer
from recommender_client.service.settings import Settings
from training.features import FeatureContract


def make_retry_policy(settings: Settings, budget: RetryBudget) -> RetryPolicy:
    """Jittered retries under ``budget``; the jitter RNG is seeded by the settings or the OS."""
    return RetryPolicy(
        retries=settings.retries,
        backoff=settings.retry_backoff_s,
        rng=np.random.default_rng(settings.retry_jitter_seed),
        budget=budget,
        min_attempt_s=settings.predict_min_budget_s,
    )


def make_client(settings: Settings, retry_policy: RetryPolicy | None = None) -> Any:
    """The blocking TF Serving client the settings ask for (gRPC channels go round robin)."""
    from recommender_client.client import GrpcClient, RestClient

    if settings.protocol == "grpc":
        return GrpcClient(
            target=settings.grpc_target, timeout=settings.predict_timeout_s, retry_policy=retry_policy
        )
    return RestClient(
        base_url=settings.rest_url, timeout=settings.predict_timeout_s, retry_policy=retry_policy
    )


def make_async_client(settings: Settings, retry_policy: RetryPolicy | None = None) -> Any:
    """The awaitable client /recommend and the model check use (gRPC on grpc.aio, REST on aiohttp).

    Must be called on the event loop that serves requests (both bind to it).
    """
    if settings.protocol == "grpc":
        from recommender_client.client.grpc_aio_client import AsyncGrpcClient

        return AsyncGrpcClient(
            target=settings.grpc_target, timeout=settings.predict_timeout_s, retry_policy=retry_policy
        )
    from recommender_client.client.rest_aio_client import AsyncRestClient

    return AsyncRestClient(
        base_url=settings.rest_url, timeout=settings.predict_timeout_s, retry_policy=retry_policy
    )


@dataclass
class ModelSide:
    """What the lifespan owns on the model side: close the scorer, stop the watch, close the client."""

    scorer: ServingScorer
    async_client: Any
    watch: ModelWatch

    async def close(self) -> None:
        await self.watch.stop()
        self.scorer.close()
        await self.async_client.close()


async def build_model_side(settings: Settings, contract: FeatureContract) -> ModelSide:
    """Clients sharing one retry budget, the scorer, and the watch that checks the served model.

    The watch is started here (the first status poll and signature check are awaited, so
    /readyz knows the model from the first request on) and
    every Predict answer's version is reported to it, so a new version is checked at once.
    Must be called on the serving event loop.
    """
    budget = RetryBudget(max_tokens=settings.retry_budget_tokens, token_ratio=settings.retry_budget_ratio)
    async_client = make_async_client(settings, make_retry_policy(settings, budget))
    scorer = ServingScorer(
        make_client(settings, make_retry_policy(settings, budget)),
        model_name=settings.model_name,
        signature_name=settings.signature_name,
        chunk_size=settings.predict_chunk_size,
        async_client=async_client,
        timeout_s=settings.predict_timeout_s,
        min_budget_s=settings.predict_min_budget_s,
    )
    watch = ModelWatch(
        async_client,
        model_name=settings.model_name,
        signature_name=settings.signature_name,
        output=scorer.output,
        inputs=contract.signature_spec(),
        poll_interval_s=settings.model_poll_interval_s,
        timeout_s=settings.status_timeout_s,
    )
    scorer.on_served = watch.observe
    await watch.start()
    return ModelSide(scorer=scorer, async_client=async_client, watch=watch)

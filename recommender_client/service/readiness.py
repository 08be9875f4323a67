"""What /readyz answers: the ranker's own ability to answer, with the model's health as fields."""

# Readiness was "TF Serving's newest version is AVAILABLE": with TF Serving down every ranker
# replica answered 503, so an orchestrator took them all out of its Service exactly when the
# fallback (recall order or popularity) should serve. A replica is ready once its artefacts and
# rules are loaded, which the lifespan guarantees before the first request; the model's state
# and the signature check are reported beside it, and a mismatch makes the answer degraded,
# still 200: the replica answers every request, without the model.

from __future__ import annotations

import time
from typing import Any

from recommender_client.breaker import BreakerState
from recommender_client.model_check import ModelReport
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.recall.reload import ArtifactWatch


def readiness(state: Any) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for ``app.state``.

    ``ready`` needs the recommender (artefacts, contract and rules loaded); ``degraded`` says
    answers come from the fallback now or may: the model is not AVAILABLE, its signature does
    not fit the contract, or the circuit breaker is open.
    """
    recommender = getattr(state, "recommender", None)
    if recommender is None:
        return 503, {"status": "not ready", "reason": "artefacts and rules not loaded"}
    watch = getattr(state, "model_watch", None)
    report: ModelReport = (
        watch.report
        if watch is not None
        else ModelReport(state=recommender.scorer.status(timeout=state.settings.status_timeout_s))
    )
    breaker = recommender.breaker
    breaker_state = breaker.state if breaker is not None else BreakerState.CLOSED
    rules = recommender.rules
    body = {
        "status": "ready",
        "degraded": not report.usable or breaker_state is BreakerState.OPEN,
        "model": state.settings.model_name,
        "state": report.state,
        "model_version": report.version,
        "contract": report.contract if watch is not None else "not_checked",
        "contract_version": report.checked_version,
        "problems": list(report.problems),
        "breaker": str(breaker_state),
        "rules_version": recommender.current_rules().digest,
        "rules_error": rules.last_error if rules is not None else None,
        "items": len(recommender.artifacts.catalog.item_ids),
        "artifacts": artifacts_report(recommender.artifacts, getattr(state, "artifact_watch", None)),
        "online_state": online_state_report(recommender),
        "experiment": experiment_report(recommender),
    }
    return 200, body


def experiment_report(recommender: Any) -> dict[str, Any] | None:
    """The running experiment's arms: share, what each asks for and its own breaker's state.

    A canary whose breaker is open sends its users to the stable arm, which the service's
    breaker guards (the ``breaker`` field above); so only that one makes the answer degraded.
    """
    arms = getattr(recommender, "arms", None)
    if arms is None:
        return None
    experiment = arms.experiment
    out = {}
    for arm in experiment.arms:
        breaker = arms.breakers.get(arm.name)
        out[arm.name] = {
            "share": arm.share,
            "model_name": arm.model_name,
            "version": arm.version,
            "version_label": arm.version_label,
            "breaker": str(breaker.state if breaker is not None else BreakerState.CLOSED),
        }
    return {"name": experiment.name, "stable": experiment.stable, "arms": out}


def online_state_report(recommender: Any) -> dict[str, Any]:
    """Which store holds the users' impressions and clicks, and how many calls to it failed.

    A store that is down does not make the replica unready: requests are answered without
    the state (no seen or caps from it), which is what the failure counts say.
    """
    store = recommender.online_state
    return {
        "store": type(store).__name__,
        "shared": bool(getattr(store, "shared", False)),
        "errors": online_state_errors(recommender),
    }


def online_state_errors(recommender: Any) -> dict[str, int]:
    """Failed calls by op: the store's own counts (``RedisState.errors``, which also counts the
    calls its breaker skipped) plus the calls that raised out of the store into the recommender."""
    counts = dict(getattr(recommender.online_state, "errors", None) or {})
    for op, n in recommender.state_failures.items():
        counts[op] = counts.get(op, 0) + n
    return counts


def artifacts_report(artifacts: RecallArtifacts, watch: ArtifactWatch | None) -> dict[str, Any]:
    """The set in force: when it was built and from which data, and how its reloads went.

    Old artefacts still serve (the online state keeps seen and caps current), so their age is
    a field and a metric (``ranker_artifacts_age_seconds``), never a reason to be unready.
    """
    built_at = artifacts.built_at
    return {
        "built_at": built_at,
        "age_s": round(time.time() - built_at, 3) if built_at is not None else None,
        "as_of": artifacts.as_of,
        "reloads": watch.reloads if watch is not None else 0,
        "reload_failures": watch.failures if watch is not None else 0,
        "reload_error": watch.last_error if watch is not None else None,
    }

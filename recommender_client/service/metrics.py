"""Prometheus metrics of one app instance, on its own registry (never the global one)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recommender_client.service.readiness import online_state_errors

if TYPE_CHECKING:
    from recommender_client.model_check import ModelWatch
    from recommender_client.recall.reload import ArtifactWatch
    from recommender_client.recommender import Recommender

STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """Latency per stage and per request, errors, fallbacks, breaker state and rules reloads."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "ranker_stage_seconds",
            "Time spent in each pipeline stage.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "ranker_request_seconds",
            "Time to answer /recommend.",
            ["degraded"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "ranker_requests", "Requests answered, by HTTP status.", ["status"], registry=self.registry
        )
        self.errors = Counter(
            "ranker_errors", "Requests that failed, by kind.", ["kind"], registry=self.registry
        )
        self.fallbacks = Counter(
            "ranker_fallbacks",
            "Answers served without the model, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.breaker_open = Gauge(
            "ranker_breaker_open", "1 while the circuit breaker refuses calls.", registry=self.registry
        )
        self.rules_reload_failures = Gauge(
            "ranker_rules_reload_failures",
            "Rules reloads rejected so far (read at scrape time).",
            registry=self.registry,
        )
        self.candidates = Histogram(
            "ranker_candidates",
            "Candidates scored per request.",
            buckets=(0, 10, 50, 100, 200, 500, 1000, 2000),
            registry=self.registry,
        )
        self.arms = ArmMetrics(self.registry)

        # labels() takes a lock and builds a key on every call; a dozen stages per request made
        # that ~3% of the service's CPU, so each labelled child is looked up once.
        self._stage_children: dict[str, Any] = {}

    def observe_stage(self, stage: str, seconds: float) -> None:
        child = self._stage_children.get(stage)
        if child is None:
            child = self._stage_children[stage] = self.stage_seconds.labels(stage=stage)
        child.observe(seconds)

    def observe_arm(self, values: Mapping[str, Any], seconds: float) -> None:
        """Count one answered request under the running experiment (see :class:`ArmMetrics`)."""
        self.arms.observe(values, seconds)

    def watch(
        self,
        recommender: Recommender,
        model: ModelWatch | None = None,
        artifacts: ArtifactWatch | None = None,
    ) -> None:
        """Report the recommender's rules failures, per-user state, artefacts and the model's
        health, read at each scrape."""
        rules = recommender.rules
        self.rules_reload_failures.set_function(lambda: rules.failures if rules is not None else 0)
        self.registry.register(UserStateCollector(recommender))
        self.registry.register(ArtifactsCollector(recommender, artifacts))
        if model is not None:
            self.registry.register(ModelHealthCollector(model))


class ArmMetrics:
    """Per-arm series of the running experiment (one experiment, at most 16 arms: bounded labels).

    ``ranker_arm_requests_total{experiment, arm, served_arm}``: answers by the user's arm and
    the arm whose model scored (``none`` when degraded; the stable arm after a canary fell
    back); ``ranker_arm_request_seconds{experiment, arm}``; ``ranker_arm_errors_total{experiment,
    arm, reason}``: that arm's model calls that failed, a canary's rescued by the stable arm
    included; ``ranker_arm_degraded_total{experiment, arm, reason}``: that arm's users answered
    without any model.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        names = ["experiment", "arm"]
        self.requests = Counter(
            "ranker_arm_requests", "Answers per experiment arm.", [*names, "served_arm"], registry=registry
        )
        self.seconds = Histogram(
            "ranker_arm_request_seconds",
            "Time to answer /recommend, per experiment arm.",
            names,
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "ranker_arm_errors",
            "Failed model calls per arm, by reason.",
            [*names, "reason"],
            registry=registry,
        )
        self.degraded = Counter(
            "ranker_arm_degraded",
            "Answers without the model per arm, by reason.",
            [*names, "reason"],
            registry=registry,
        )

    def observe(self, values: Mapping[str, Any], seconds: float) -> None:
        experiment, arm = str(values["experiment"]), str(values["arm"])
        served = values.get("served_arm")
        self.requests.labels(experiment, arm, served if served is not None else "none").inc()
        self.seconds.labels(experiment, arm).observe(seconds)
        for failed, reason in values.get("arm_errors", ()):
            self.errors.labels(experiment, failed, reason).inc()
        if values.get("degraded"):
            self.degraded.labels(experiment, arm, str(values.get("degraded_reason"))).inc()


class ArtifactsCollector(Collector):
    """The artefact set in force: its age and the reloads that replaced it (or were refused).

    Alert on ``ranker_artifacts_age_seconds`` above the rebuild period (the builds stopped, or
    every new set is refused: ``ranker_artifacts_reload_failures_total`` grows and /readyz
    names the error); ``ranker_artifacts_reload_failures_total`` counts each refused manifest once.
    """

    def __init__(self, recommender: Recommender, watch: ArtifactWatch | None) -> None:
        self._recommender = recommender
        self._watch = watch

    def collect(self) -> Iterator[Metric]:
        built_at = self._recommender.artifacts.built_at
        yield GaugeMetricFamily(
            "ranker_artifacts_age_seconds",
            "Seconds since the artefact set in force was built (its manifest's built_at).",
            value=time.time() - built_at if built_at is not None else math.nan,
        )
        watch = self._watch
        yield CounterMetricFamily(
            "ranker_artifacts_reloads",
            "Artefact sets loaded without a restart.",
            value=watch.reloads if watch else 0,
        )
        yield CounterMetricFamily(
            "ranker_artifacts_reload_failures",
            "New artefact sets refused (the set in force was kept).",
            value=watch.failures if watch else 0,
        )


class ModelHealthCollector(Collector):
    """The served model as the model check sees it: available, which version, fits the contract.

    An alert on ``ranker_model_contract_mismatch == 1`` finds a model the ranker cannot use
    before the fallbacks pile up; ``ranker_model_available`` is what readiness used to be.
    """

    def __init__(self, watch: ModelWatch) -> None:
        self._watch = watch

    def collect(self) -> Iterator[Metric]:
        report = self._watch.report
        yield GaugeMetricFamily(
            "ranker_model_available",
            "1 while the model's serving version is AVAILABLE on the model server.",
            value=1.0 if report.state == "AVAILABLE" else 0.0,
        )
        yield GaugeMetricFamily(
            "ranker_model_version",
            "The model version serving (-1 unknown).",
            value=float(report.version if report.version is not None else -1),
        )
        yield GaugeMetricFamily(
            "ranker_model_contract_mismatch",
            "1 while the served signature does not fit the feature contract.",
            value=1.0 if report.contract == "mismatch" else 0.0,
        )
        checks = CounterMetricFamily(
            "ranker_model_checks", "Signature checks against the contract, by result.", labels=["result"]
        )
        for result, count in sorted((report.checks or {}).items()):
            checks.add_metric([result], count)
        yield checks


class UserStateCollector(Collector):
    """Size of the per-user state: the exposure log (grows with traffic, bounded by its budget) and
    the artefacts' user histories (fixed at load; listed so the two can be compared)."""

    def __init__(self, recommender: Recommender) -> None:
        self._recommender = recommender

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily(
            "ranker_user_state_bytes", "Bytes held per user state, by store.", labels=["store"]
        )
        users = GaugeMetricFamily("ranker_user_state_users", "Users held, by store.", labels=["store"])
        evictions = CounterMetricFamily(
            "ranker_user_state_evictions", "Users forgotten, by store and reason.", labels=["store", "reason"]
        )
        a = self._recommender.artifacts  # the set in force: artefacts are reloaded without a restart
        history = (a.history_offsets, a.history_items, a.history_times, a.history_clicked)
        size.add_metric(["history"], sum(x.nbytes for x in history))
        users.add_metric(["history"], len(a.user_ids))
        exposures = self._recommender.exposures
        accounted = getattr(exposures, "accounted_bytes", None)
        if accounted is not None:  # an external store (Redis...) reports its own size
            size.add_metric(["exposures"], accounted)
            users.add_metric(["exposures"], len(exposures))  # type: ignore[arg-type]
            for reason, count in getattr(exposures, "evictions", {}).items():
                evictions.add_metric(["exposures", reason], count)
        yield size
        yield users
        yield evictions
        errors = CounterMetricFamily(
            "ranker_online_state_errors",
            "Online-state calls that failed (answered with an empty state, or a write dropped), by op.",
            labels=["op"],
        )
        for op, count in sorted(online_state_errors(self._recommender).items()):
            errors.add_metric([op], count)
        yield errors

"""The ranking service's one settings object: environment variables (RANKER_*) or a dotenv file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommender_client.console.settings import ConsoleSettings
from recommender_client.rerank.exposure import DEFAULT_MAX_BYTES as DEFAULT_EXPOSURE_BYTES
from recommender_client.rerank.exposure import DEFAULT_TTL_S as DEFAULT_EXPOSURE_TTL_S
from recommender_client.service.schemas import MAX_EPOCH_S

# Rows per Predict call by default. serving.tfserving_config sizes the model server's
# max_batch_size from it, so a ranker left at its defaults fits the server's batching config.
DEFAULT_PREDICT_CHUNK_SIZE = 1000


class Settings(BaseSettings):
    """Every knob of the service; env vars ``RANKER_<FIELD>`` override a dotenv file's values.

    Build with ``Settings()`` (environment only) or ``Settings(_env_file="ranker.env")``.
    """

    model_config = SettingsConfigDict(
        env_prefix="RANKER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # offline inputs
    artifacts_dir: Path = Field(description="folder written by recommender_client.recall.build")
    contract_path: Path | None = Field(
        default=None, description="feature contract; default: in artifacts_dir"
    )
    rules_path: Path | None = Field(default=None, description="operator rules YAML; none: no rules")
    rules_reload_interval_s: float = Field(default=2.0, ge=0)
    experiments_path: Path | None = Field(
        default=None,
        description="experiments YAML (or JSON): arms selecting a model name, version or "
        "version_label with traffic shares, and the one active; read at start-up (a changed "
        "split mid-experiment would move users between arms); none: no experiment",
    )
    artifacts_poll_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="seconds between checks of artifacts_dir's manifest; a changed one is loaded "
        "in the background and swapped in whole (a broken set keeps the old); 0: never reloaded",
    )

    # model server
    protocol: Literal["grpc", "rest"] = "grpc"
    grpc_target: str = "127.0.0.1:8500"
    rest_url: str = "http://127.0.0.1:8501"
    model_name: str = "ctr"
    signature_name: str = "serving_default"
    predict_timeout_s: float = Field(default=0.25, gt=0, description="upper bound on one Predict call")
    predict_chunk_size: int = Field(
        default=DEFAULT_PREDICT_CHUNK_SIZE, ge=1, description="rows per Predict call"
    )
    serving_max_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="the model server's batching max_batch_size; a larger Predict is refused "
        "there, so start-up fails if the ranker could send one. None: unknown, not checked",
    )
    status_timeout_s: float = Field(default=1.0, gt=0)
    predict_min_budget_s: float = Field(
        default=0.002,
        ge=0,
        description="no Predict is sent with less time left than this: the request degrades without "
        "calling (a 500-row Predict takes ~2 ms; 0.1 ms budgets only came back as timeouts)",
    )
    retries: int = Field(default=2, ge=0, le=10, description="extra attempts after UNAVAILABLE")
    retry_backoff_s: float = Field(
        default=0.05, ge=0, description="first retry pause ceiling, doubled each time, jittered"
    )
    retry_budget_tokens: float = Field(
        default=10.0,
        gt=0,
        le=1000,
        description="gRPC retry throttling: a failure takes a token, retries stop below half",
    )
    retry_budget_ratio: float = Field(default=0.1, gt=0, description="tokens a success gives back")
    retry_jitter_seed: int | None = Field(
        default=None,
        description="seeds the retry jitter; none: OS entropy, so replicas do not retry in step",
    )
    model_poll_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="GetModelStatus period of the model check; a new version seen in a Predict "
        "answer is checked at once",
    )

    # request handling
    request_deadline_s: float = Field(
        default=0.5, gt=0, description="answer within this, degraded if need be"
    )
    max_k: int = Field(default=100, ge=1)
    max_request_candidates: int = Field(
        default=2000,
        ge=1,
        description="longest candidates list a request may give (400 beyond); duplicates count here, "
        "distinct ids count against max_candidates",
    )
    fallback: Literal["recall", "popularity"] = "recall"
    fixed_now: float | None = Field(
        default=None, ge=0, le=MAX_EPOCH_S, description="pin the clock (replays and demos)"
    )
    seed: int = Field(default=0, description="seeds exploration together with the user id")

    # request limits: what one client's request may cost (checked before any work is done)
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="413 beyond, from Content-Length before reading or as the body arrives. 1 MiB "
        "holds the largest valid request (2,000 candidate ids of 256 characters are ~0.52 MB); "
        "300 MiB bodies were read whole before, taking the process from 181 to 738 MB",
    )
    max_string_length: int = Field(
        default=256,
        ge=16,
        description="characters in any string of a request: user id, candidate ids, context keys and "
        "values (422 beyond). Ids and categorical values are short; a 1 MiB context string made "
        "each request a ~500 MiB Predict",
    )
    max_context_keys: int = Field(
        default=64,
        ge=1,
        description="keys in a request's context (422 beyond; unknown keys are a 400 anyway). The "
        "Criteo contract has 39 context features; start-up fails if the contract has more than this",
    )
    max_context_bytes: int = Field(
        default=4096,
        ge=64,
        description="UTF-8 bytes of all context strings together (400 beyond): the context is repeated "
        "on each of up to max_candidates rows, so this bounds its share of a Predict (2 MiB at 500 rows)",
    )

    # recall
    max_candidates: int = Field(
        default=500,
        ge=1,
        description="most items scored per request: recall stops there, and a request's own list "
        "with more distinct ids is a 400 (never cut silently)",
    )
    quota_itemcf: int = Field(default=250, ge=0)
    quota_category_popularity: int = Field(default=100, ge=0)
    quota_new: int = Field(default=50, ge=0)
    quota_popularity: int = Field(default=500, ge=0)
    new_item_days: float = Field(default=3.0, gt=0)

    # degradation
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0)

    # online state (impressions for frequency caps, clicks for seen and item-CF seeds)
    state_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="where the online state lives: this process (bounded by the exposure_* settings) "
        "or Redis at redis_url, shared by every replica so they apply one frequency cap",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        pattern=r"^(redis|rediss|unix)://",
        max_length=1024,
        description="the Redis of state_backend=redis (redis://host:port/db, rediss:// for TLS, unix://)",
    )
    redis_timeout_s: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="connect, read and pool-wait timeout of a Redis call; a failed read serves without "
        "the state (counted), so keep it well inside request_deadline_s",
    )
    redis_max_connections: int = Field(default=16, ge=1, le=1024, description="Redis pool size")

    # exposures (frequency caps): in process bounded in bytes and in time; ttl and events per user
    # also bound the Redis backend
    exposure_max_bytes: int = Field(
        default=DEFAULT_EXPOSURE_BYTES,
        ge=1 << 16,
        description="memory budget of the exposure log; least recently served users are forgotten "
        "beyond it. 64 MiB: ~30,000 users with 100 impressions (2.2 KB each, measured) or ~7,400 "
        "at the 500-event cap; it bounds what made-up user ids can take (toward 3.4 GB before)",
    )
    exposure_ttl_s: float = Field(
        default=DEFAULT_EXPOSURE_TTL_S,
        gt=0,
        description="a user not served for this long is forgotten (Redis: the keys' TTL); "
        "one day, the default rules' longest frequency_cap period. Keep it at least the longest "
        "period_hours in the rules",
    )
    exposure_max_users: int = Field(default=100_000, ge=1, description="users kept, whatever their size")
    exposure_max_events_per_user: int = Field(
        default=500, ge=1, description="newest impressions kept per user (16 bytes each)"
    )

    # the online loop: served-list log and events
    served_log_path: Path | None = Field(
        default=None,
        description="JSON-lines log of served lists with the model inputs sent (recsys-join-events "
        "reads it; skew analysis too); none: not logged",
    )
    served_log_sample_rate: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="share of requests logged, chosen by a hash of the request id (the same on every "
        "replica). 1.0: every served list can become training rows; ~5 KB a request at k=10 and 40 "
        "features, so lower it where the traffic would outgrow max_bytes * backups between joins",
    )
    served_log_max_bytes: int = Field(default=100_000_000, ge=1024, description="rotate at this size")
    served_log_backups: int = Field(default=10, ge=1, description="rotated files kept")
    served_log_queue: int = Field(
        default=10_000, ge=1, description="records waiting for the writer thread; dropped and counted beyond"
    )
    events_log_path: Path | None = Field(
        default=None, description="JSON-lines log of accepted /events (rotating as the served log)"
    )
    events_max_batch: int = Field(
        default=1000, ge=1, le=100_000, description="events in one POST (413 beyond)"
    )
    events_dedup_size: int = Field(
        default=1_000_000,
        ge=1,
        description="event ids remembered for idempotency (oldest forgotten first; ~100 bytes each)",
    )
    events_max_age_s: float = Field(
        default=7 * 86400.0, gt=0, description="events older than this (by the server's now) are a 422"
    )
    events_max_ahead_s: float = Field(
        default=300.0, ge=0, description="events dated further ahead of now (clock skew) are a 422"
    )
    impressions_from: Literal["served", "events"] = Field(
        default="served",
        description="what counts as an impression for frequency caps: every served item (the ranker "
        "records it as it answers), or only impression events from /events (the client reports what "
        "was really shown). Never both: that would count each impression twice",
    )

    # the operator console (RANKER_CONSOLE__ENABLED, __TOKEN, ...; see console/settings.py)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @model_validator(mode="after")
    def _contract_default(self) -> Settings:
        if self.contract_path is None:
            object.__setattr__(self, "contract_path", self.artifacts_dir / "feature_contract.json")
        return self

    @model_validator(mode="after")
    def _predicts_fit_the_server(self) -> Settings:
        """Refuse settings whose Predicts the model server's batching would refuse.

        TF Serving answers a task above ``max_batch_size`` with INVALID_ARGUMENT ("Task size N is
        larger than maximum input batch size M"), so every /recommend would degrade to recall
        order; failing at start-up names the two settings instead.
        """
        limit = self.serving_max_batch_size
        if limit is not None and self.largest_predict_rows > limit:
            raise ValueError(
                f"predict_chunk_size={self.predict_chunk_size} with max_candidates={self.max_candidates} "
                f"sends Predicts of up to {self.largest_predict_rows} rows, more than "
                f"serving_max_batch_size={limit} (the model server refuses larger batches): set "
                f"RANKER_PREDICT_CHUNK_SIZE <= {limit}, or raise the server's max_batch_size "
                "and RANKER_SERVING_MAX_BATCH_SIZE with it"
            )
        return self

    @property
    def largest_predict_rows(self) -> int:
        """The most rows one Predict call carries.

        Every request is cut to ``max_candidates`` items (recall, or the request's own list) and
        scored in chunks of ``predict_chunk_size``.
        """
        return min(self.predict_chunk_size, self.max_candidates)

    def quotas(self) -> dict[str, int]:
        return {
            "itemcf": self.quota_itemcf,
            "category_popularity": self.quota_category_popularity,
            "new": self.quota_new,
            "popularity": self.quota_popularity,
        }

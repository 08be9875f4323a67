"""The interface both clients implement, plus the deadline-and-retry loop they share."""

from __future__ import annotations

import abc
import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Self, TypeVar

import numpy as np

from recommender_client.client.errors import ServingTimeout, ServingUnavailable
from recommender_client.client.metadata import ModelMetadata, ModelVersionStatus
from recommender_client.client.retry_budget import RetryBudget
from recommender_client.deadline import DEFAULT_MIN_BUDGET_S

T = TypeVar("T")

DEFAULT_TIMEOUT = 1.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.05
MAX_BACKOFF = 1.0


def check_timeout(timeout: float, *, what: str = "timeout") -> float:
    """Every call has a finite deadline: reject None, zero, negative and infinite values."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {timeout!r}")
    return float(timeout)


class RetryPolicy:
    """Bounded retries with jittered exponential backoff, all inside one overall deadline.

    Args:
        retries: Extra attempts after the first (so ``retries=2`` means at most 3 calls).
        backoff: Pause before the first retry, doubled for each later one, capped at ``max_backoff``.
        max_backoff: Longest single pause.
        rng: Draws the jitter: each pause is uniform in ``[0, backoff * 2**n]`` (gRPC's retry
            backoff, gRFC A6), so clients refused at the same moment do not come back at the
            same moment. ``None``: no jitter (the exact pauses, for tests and scripts).
        budget: Shared :class:`RetryBudget`; a retry it does not allow is not made.
        min_attempt_s: A retry that would start with less than this left is not made.
        sleep, clock: Injectable for deterministic tests; default ``time.sleep``/``time.monotonic``.
    """

    def __init__(
        self,
        *,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        rng: np.random.Generator | None = None,
        budget: RetryBudget | None = None,
        min_attempt_s: float = DEFAULT_MIN_BUDGET_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not (math.isfinite(backoff) and backoff >= 0 and math.isfinite(max_backoff) and max_backoff >= 0):
            raise ValueError(f"backoff and max_backoff must be finite and >= 0, got {backoff}, {max_backoff}")
        if not (math.isfinite(min_attempt_s) and min_attempt_s >= 0):
            raise ValueError(f"min_attempt_s must be finite and >= 0, got {min_attempt_s!r}")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.budget = budget
        self.min_attempt_s = min_attempt_s
        self._rng = rng
        self._rng_lock = threading.Lock()  # a numpy Generator is not safe across threads
        self._sleep = sleep
        self._clock = clock

    def run(self, attempt: Callable[[float], T], *, timeout: float, what: str) -> T:
        """Call ``attempt(seconds_left)`` until it returns, retrying only ServingUnavailable.

        The deadline covers every attempt and pause: a retry that could not start before it
        passes (with at least ``min_attempt_s`` left) is not made, nor one the budget refuses;
        the last ServingUnavailable is raised instead.

        Raises:
            ServingUnavailable: every attempt was refused (the message says how many).
            ServingTimeout: the deadline passed.
            TFServingError: whatever else ``attempt`` raised, unretried.
        """
        deadline = self._clock() + timeout
        for number in range(self.retries + 1):
            left = self._time_left(deadline, timeout, number, what)
            try:
                result = attempt(left)
            except ServingUnavailable as exc:
                self._sleep(self._pause_or_give_up(exc, number, deadline))
                continue
            self._succeeded()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def run_async(self, attempt: Callable[[float], Awaitable[T]], *, timeout: float, what: str) -> T:
        """:meth:`run` for coroutines: pauses with ``asyncio.sleep`` instead of blocking."""
        deadline = self._clock() + timeout
        for number in range(self.retries + 1):
            left = self._time_left(deadline, timeout, number, what)
            try:
                result = await attempt(left)
            except ServingUnavailable as exc:
                await asyncio.sleep(self._pause_or_give_up(exc, number, deadline))
                continue
            self._succeeded()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _succeeded(self) -> None:
        if self.budget is not None:
            self.budget.record_success()

    def _time_left(self, deadline: float, timeout: float, number: int, what: str) -> float:
        """Seconds left for attempt ``number`` (0-based); ServingTimeout once none are."""
        left = deadline - self._clock()
        if left <= 0:
            raise ServingTimeout(f"{what}: deadline of {timeout:.3g}s passed before attempt {number + 1}")
        return left

    def pause(self, number: int) -> float:
        """The pause after failed attempt ``number`` (0-based): jittered when an rng was given."""
        ceiling = min(self.backoff * (2**number), self.max_backoff)
        if self._rng is None:
            return ceiling
        with self._rng_lock:
            return float(self._rng.uniform(0.0, ceiling))

    def _pause_or_give_up(self, exc: ServingUnavailable, number: int, deadline: float) -> float:
        """The pause before the next attempt, or the final ServingUnavailable if there is none."""
        allowed = self.budget.record_failure() if self.budget is not None else True
        why = ""
        if number < self.retries:
            if not allowed:
                why = ", retry budget spent"
            else:
                pause = self.pause(number)
                if self._clock() + pause + self.min_attempt_s < deadline:
                    return pause
        raise ServingUnavailable(
            f"{exc.message} (gave up after {number + 1} attempt(s){why})",
            code=exc.code,
            server_message=exc.server_message,
        ) from exc


class TFServingClient(abc.ABC):
    """One interface over TF Serving's gRPC and REST APIs; use as a context manager.

    Every method takes ``timeout`` (seconds, the whole call including retries); ``None`` means
    the client's default, which is always finite.
    """

    @abc.abstractmethod
    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        model_name: str,
        signature_name: str = "serving_default",
        version: int | None = None,
        version_label: str | None = None,
        output_filter: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the signature on named input arrays; returns output name -> array.

        Numeric outputs keep their dtype; string outputs are object arrays of bytes.
        """

    @abc.abstractmethod
    def model_status(
        self, model_name: str, *, version: int | None = None, timeout: float | None = None
    ) -> list[ModelVersionStatus]:
        """Status of every version of ``model_name`` (or of one ``version``)."""

    @abc.abstractmethod
    def model_metadata(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = None,
    ) -> ModelMetadata:
        """Signatures of the model version that would serve a request (latest by default)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections this client created; calling it twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

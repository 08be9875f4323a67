"""A circuit breaker that stops calling a failing model server for a cool-down and recovers by itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls flow; consecutive failures are counted
    OPEN = "open"  # calls are refused until the cool-down has passed
    HALF_OPEN = "half_open"  # one trial call decides: success closes, failure re-opens


class CircuitBreaker:
    """Closed / open / half-open breaker, thread-safe, with an injectable clock.

    After ``failure_threshold`` consecutive failures the breaker opens and :meth:`allow` refuses
    calls for ``cooldown_s``. Then it lets exactly one trial call through (half-open); while that
    trial is in flight other callers are refused. The trial's success closes the breaker, its
    failure opens it for another cool-down.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"CircuitBreaker: failure_threshold must be >= 1, got {failure_threshold}")
        if cooldown_s <= 0:
            raise ValueError(f"CircuitBreaker: cooldown_s must be > 0, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker past its cool-down reports half-open."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                return BreakerState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether the caller may call now; a True in half-open reserves the single trial call."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.cooldown_s:
                    return False
                self._state = BreakerState.HALF_OPEN
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record(self, outcome: BaseException | None) -> None:
        """Count one call's outcome: ``None`` is a success; an exception is a failure unless it
        says the server is not to blame (``server_fault = False``: a call we never sent, a
        timeout our own request deadline caused) or we cancelled the call ourselves.

        Those neutral outcomes change no count, so a healthy server under our own overload
        (requests arriving with little time left) does not open the breaker; they only free
        a half-open trial slot, so the next caller can make the trial call.
        """
        if outcome is None:
            self.record_success()
        elif isinstance(outcome, asyncio.CancelledError) or not getattr(outcome, "server_fault", True):
            self.release()
        else:
            self.record_failure()

    def release(self) -> None:
        """Forget a call that told nothing about the server (frees the half-open trial)."""
        with self._lock:
            self._trial_in_flight = False

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._trial_in_flight = False

"""One request deadline, shared by every remote call the request makes."""

from __future__ import annotations

import time
from collections.abc import Callable

# Below this a call cannot finish: a loopback gRPC round trip alone is ~0.2 ms, a 500-row
# Predict ~2 ms. Sending 0.1 ms of budget only manufactured DEADLINE_EXCEEDED answers.
DEFAULT_MIN_BUDGET_S = 0.002


class Deadline:
    """A point on the monotonic clock by which a request's remote calls must be done.

    Each call made for the request gets only :meth:`left` (never a fresh timeout of its own),
    so several chunks, retries or stages together cannot outlast the request.

    Args:
        at: the deadline as a ``clock()`` value.
        clock: the monotonic clock the deadline is measured on (injectable for tests).
    """

    __slots__ = ("_clock", "at")

    def __init__(self, at: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.at = float(at)
        self._clock = clock

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(clock() + seconds, clock=clock)

    def left(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self.at - self._clock())

    def budget(self, *, cap: float | None = None, minimum: float = 0.0) -> float | None:
        """The time one call may take: what is left, at most ``cap``; ``None`` below ``minimum``.

        ``None`` means "do not call": the answer could not arrive in time, and a call sent
        anyway would come back as a timeout that says nothing about the server.
        """
        left = self.at - self._clock()
        if left <= 0 or left < minimum:
            return None
        return left if cap is None else min(cap, left)

    def __repr__(self) -> str:
        return f"Deadline(left={self.left():.4f}s)"

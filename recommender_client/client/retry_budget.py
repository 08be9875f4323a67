"""A retry budget shared by every call to one server: gRPC's retry throttling (gRFC A6)."""

# Retries with a fixed count multiply the load on a server that is already failing: with
# retries=2 every refused call becomes three. The budget lets retries through while most calls
# succeed and stops them once failures pile up, so a struggling server sees at most about the
# traffic it would see without retries, and retries come back by themselves as calls succeed.

from __future__ import annotations

import math
import threading


class RetryBudget:
    """Token bucket deciding whether a failed call may be retried (gRPC's ``retryThrottling``).

    The bucket starts full at ``max_tokens``. Each retryable failure takes one token, each
    success gives back ``token_ratio``; a retry is allowed only while more than half the
    tokens are left. With the defaults (10, 0.1) about one retry per ten successes is
    sustained, and after five failures in a row nothing is retried until the calls recover.
    Thread-safe: one budget serves a client's threads or, shared, several clients.

    Args:
        max_tokens: size of the bucket (gRPC allows 1 to 1000).
        token_ratio: tokens a success gives back (> 0).
    """

    def __init__(self, *, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        if not (math.isfinite(max_tokens) and 0 < max_tokens <= 1000):
            raise ValueError(f"RetryBudget: max_tokens must be in (0, 1000], got {max_tokens!r}")
        if not (math.isfinite(token_ratio) and token_ratio > 0):
            raise ValueError(f"RetryBudget: token_ratio must be finite and > 0, got {token_ratio!r}")
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self._tokens = self.max_tokens
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        return self._tokens

    def record_success(self) -> None:
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def record_failure(self) -> bool:
        """Take a token for a retryable failure; returns whether a retry is allowed now."""
        with self._lock:
            self._tokens = max(0.0, self._tokens - 1.0)
            return self._tokens > self.max_tokens / 2

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self._tokens:.2f}/{self.max_tokens:g}, ratio={self.token_ratio:g})"

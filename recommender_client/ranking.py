"""Scorers: TF Serving through the client (chunked Predict calls) and a local popularity model."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from recommender_client.deadline import DEFAULT_MIN_BUDGET_S, Deadline
from recommender_client.model_check import model_state


class ScoringError(RuntimeError):
    """Scoring failed.

    Attributes:
        reason: unavailable, timeout, bad_response, model_not_found, invalid_request or
            deadline (not called: too little time left).
        server_fault: whether the model server is to blame, i.e. whether the circuit breaker
            counts it as a failure. False for a call never sent and for a timeout our own
            request deadline caused; an invalid request (a model/contract mismatch) is the
            server's: calling again fails the same way.
    """

    def __init__(self, message: str, *, reason: str, server_fault: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.server_fault = server_fault


class Scorer(Protocol):
    """Gives one click probability per candidate row."""

    def score(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        """float32 [N] scores for the N rows of ``inputs`` (``item_ids`` names the rows)."""
        ...

    def status(self, *, timeout: float | None = None) -> str:
        """``AVAILABLE`` when the scorer can serve (TF Serving's model version state names)."""
        ...

    def close(self) -> None: ...


class LocalScorer:
    """A logistic model over item popularity, computed in process with numpy.

    ``p = sigmoid(intercept + slope * log1p(popularity[item]))``. It needs no model server, so it
    serves as the popularity fallback, for offline replays, and to run the pipeline without
    TF Serving. Unknown items have popularity 0.
    """

    def __init__(
        self, popularity: Mapping[str, float], *, intercept: float = -3.0, slope: float = 1.0
    ) -> None:
        bad = [k for k, v in popularity.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"LocalScorer: popularity must be finite and >= 0, bad items {bad[:3]}")
        self._popularity = dict(popularity)
        self.intercept = float(intercept)
        self.slope = float(slope)

    def score(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        pop = np.fromiter(
            (self._popularity.get(i, 0.0) for i in item_ids), dtype=np.float64, count=len(item_ids)
        )
        logit = self.intercept + self.slope * np.log1p(pop)
        return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    def status(self, *, timeout: float | None = None) -> str:
        return "AVAILABLE"

    def close(self) -> None:
        return None


_REASONS = {
    "ServingUnavailable": "unavailable",
    "ServingTimeout": "timeout",
    "BadResponse": "bad_response",
    "ModelNotFound": "model_not_found",
    "InvalidRequest": "invalid_request",
}


@dataclass(frozen=True)
class ServedBy:
    """The model that scored a request: name and version as the server reported them.

    ``version`` is ``None`` where the protocol does not say (TF Serving's REST predict answer).
    """

    model_name: str
    version: int | None


@dataclass(frozen=True)
class ScoringResult:
    """Scores plus the model that produced them (the newest version when chunks disagreed)."""

    scores: np.ndarray
    served_by: ServedBy | None


class ServingScorer:
    """Scores through a TF Serving client: one Predict call per chunk of at most ``chunk_size`` rows.

    One deadline covers every chunk: each call gets only the time left (at most the per-call
    ``timeout_s``), and none is sent with less than ``min_budget_s`` left; the request then
    degrades without calling. On the async path the chunks are sent concurrently, so five
    chunks take about one Predict's time, not five. A timeout counts against the server (its
    ``ScoringError.server_fault``) only when the call had the whole per-call timeout: when the
    request's own deadline had cut the budget shorter, the timeout is ours.

    Args:
        client: a ``recommender_client.client`` client (gRPC or REST); owned by the caller.
        model_name: the served model.
        signature_name: the predict signature.
        output: the output tensor holding the click probability.
        chunk_size: rows per Predict call; a request above it is split so one huge request cannot
            exceed the server's batch or message limits.
        async_client: the awaitable twin of ``client`` that :meth:`score_async` uses.
        timeout_s: the per-call timeout (the service's ``predict_timeout_s``). A call given less
            (the request's deadline was nearer) that times out is not the server's fault; with
            ``None`` every timeout counts against the server and a call without ``timeout``
            gets the client's own.
        min_budget_s: the least time worth sending a call with.
        on_served: called with the model of every answered chunk (the model check watches
            versions through it).
    """

    def __init__(
        self,
        client: Any,
        *,
        model_name: str,
        signature_name: str = "serving_default",
        output: str = "ctr",
        chunk_size: int = 1000,
        async_client: Any = None,
        timeout_s: float | None = None,
        min_budget_s: float = DEFAULT_MIN_BUDGET_S,
        on_served: Callable[[ServedBy], None] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"ServingScorer: chunk_size must be >= 1, got {chunk_size}")
        if min_budget_s < 0:
            raise ValueError(f"ServingScorer: min_budget_s must be >= 0, got {min_budget_s}")
        from recommender_client.client import TFServingError

        self._error_type: type[Exception] = TFServingError
        self.client = client
        self.async_client = async_client
        self.model_name = model_name
        self.signature_name = signature_name
        self.output = output
        self.chunk_size = chunk_size
        self.timeout_s = timeout_s
        self.min_budget_s = min_budget_s
        self.on_served = on_served

    @property
    def supports_async(self) -> bool:
        """Whether :meth:`score_async` can be awaited (an async client was given)."""
        return self.async_client is not None

    def _chunks(self, inputs: Mapping[str, np.ndarray], n: int) -> list[tuple[dict[str, np.ndarray], int]]:
        out = []
        for start in range(0, n, self.chunk_size):
            chunk = {name: col[start : start + self.chunk_size] for name, col in inputs.items()}
            out.append((chunk, len(next(iter(chunk.values()))) if chunk else 0))
        return out

    def _deadline(self, timeout: float | None) -> tuple[Deadline, bool]:
        """The scoring call's deadline, and whether the caller cut it below the per-call timeout."""
        full = self.timeout_s
        if timeout is None:
            seconds = full if full is not None else float(getattr(self.client, "timeout", 1.0))
        else:
            seconds = timeout if full is None else min(timeout, full)
        return Deadline.after(seconds), full is not None and seconds < full

    def _budget(self, deadline: Deadline) -> float:
        budget = deadline.budget(minimum=self.min_budget_s)
        if budget is None:
            raise ScoringError(
                f"Predict on {self.model_name!r} not sent: {deadline.left() * 1000:.2f} ms left, "
                f"below the {self.min_budget_s * 1000:.2f} ms minimum",
                reason="deadline",
                server_fault=False,
            )
        return budget

    def _failure(self, exc: Exception, cut: bool) -> ScoringError:
        reason = next(
            (_REASONS[b.__name__] for b in type(exc).__mro__ if b.__name__ in _REASONS), "unavailable"
        )
        return ScoringError(
            f"Predict on {self.model_name!r} failed: {exc}",
            reason=reason,
            server_fault=not (cut and reason == "timeout"),
        )

    def _served(self, outputs: Mapping[str, np.ndarray], rows: int) -> tuple[np.ndarray, ServedBy]:
        """Check a chunk's answer; the gRPC clients' ``Outputs`` name the version that gave it."""
        served = ServedBy(
            getattr(outputs, "model_name", "") or self.model_name, getattr(outputs, "version", None)
        )
        if self.on_served is not None:
            self.on_served(served)
        return self._check(outputs, rows), served

    def score(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        return self.score_result(inputs, item_ids, timeout=timeout).scores

    def score_result(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> ScoringResult:
        """:meth:`score` plus the model that answered; chunks are sent one after another."""
        deadline, cut = self._deadline(timeout)
        parts = []
        for chunk, rows in self._chunks(inputs, len(item_ids)):
            budget = self._budget(deadline)
            try:
                outputs = self.client.predict(
                    chunk, model_name=self.model_name, signature_name=self.signature_name, timeout=budget
                )
            except self._error_type as exc:
                raise self._failure(exc, cut) from exc
            parts.append(self._served(outputs, rows))
        return _joined(parts)

    async def score_async(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        """:meth:`score` through the async client, chunks concurrently (same checks and errors)."""
        return (await self.score_result_async(inputs, item_ids, timeout=timeout)).scores

    async def score_result_async(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> ScoringResult:
        """:meth:`score_result` on the async client; the first failing chunk cancels the others."""
        if self.async_client is None:
            raise RuntimeError("ServingScorer.score_async needs an async_client")
        deadline, cut = self._deadline(timeout)

        async def one(chunk: dict[str, np.ndarray], rows: int) -> tuple[np.ndarray, ServedBy]:
            budget = self._budget(deadline)
            try:
                outputs = await self.async_client.predict(
                    chunk, model_name=self.model_name, signature_name=self.signature_name, timeout=budget
                )
            except self._error_type as exc:
                raise self._failure(exc, cut) from exc
            return self._served(outputs, rows)

        chunks = self._chunks(inputs, len(item_ids))
        if len(chunks) <= 1:
            return _joined([await one(*c) for c in chunks])
        tasks = [asyncio.ensure_future(one(*c)) for c in chunks]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
        failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        return _joined([t.result() for t in tasks])

    def _check(self, outputs: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        if self.output not in outputs:
            raise ScoringError(
                f"model {self.model_name!r} returned outputs {sorted(outputs)}, no {self.output!r}",
                reason="bad_response",
            )
        scores = np.asarray(outputs[self.output], dtype=np.float32).reshape(-1)
        if scores.shape != (rows,):
            raise ScoringError(
                f"model {self.model_name!r}: output {self.output!r} has {scores.size} values for {rows} rows",
                reason="bad_response",
            )
        if not np.isfinite(scores).all():
            raise ScoringError(f"model {self.model_name!r}: non-finite scores", reason="bad_response")
        return scores

    def status(self, *, timeout: float | None = None) -> str:
        """The state of the newest version (``AVAILABLE``, ``LOADING``...), or ``UNAVAILABLE``."""
        try:
            status = self.client.model_status(self.model_name, timeout=timeout)
        except self._error_type:
            return "UNAVAILABLE"
        return model_state(status)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _joined(parts: Sequence[tuple[np.ndarray, ServedBy]]) -> ScoringResult:
    """One result from the chunks' scores, served by the newest version any chunk reported."""
    if not parts:
        return ScoringResult(np.zeros(0, np.float32), None)
    served = max((p[1] for p in parts), key=lambda s: -1 if s.version is None else s.version)
    return ScoringResult(np.concatenate([p[0] for p in parts]), served)

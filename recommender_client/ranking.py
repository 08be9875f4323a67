"""Scorers: TF Serving through the client (chunked Predict calls) and a local popularity model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np


class ScoringError(RuntimeError):
    """Scoring failed; ``reason`` is one of unavailable, timeout, bad_response, invalid_request."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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


class ServingScorer:
    """Scores through a TF Serving client: one Predict call per chunk of at most ``chunk_size`` rows.

    Args:
        client: a ``recommender_client.client`` client (gRPC or REST); owned by the caller.
        model_name: the served model.
        signature_name: the predict signature.
        output: the output tensor holding the click probability.
        chunk_size: rows per Predict call; a request above it is split so one huge request cannot
            exceed the server's batch or message limits.
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
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"ServingScorer: chunk_size must be >= 1, got {chunk_size}")
        from recommender_client.client import TFServingError

        self._error_type: type[Exception] = TFServingError
        self.client = client
        self.async_client = async_client
        self.model_name = model_name
        self.signature_name = signature_name
        self.output = output
        self.chunk_size = chunk_size

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

    def _failure(self, exc: Exception) -> ScoringError:
        reason = next(
            (_REASONS[b.__name__] for b in type(exc).__mro__ if b.__name__ in _REASONS), "unavailable"
        )
        return ScoringError(f"Predict on {self.model_name!r} failed: {exc}", reason=reason)

    def score(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        parts = []
        for chunk, rows in self._chunks(inputs, len(item_ids)):
            try:
                outputs = self.client.predict(
                    chunk, model_name=self.model_name, signature_name=self.signature_name, timeout=timeout
                )
            except self._error_type as exc:
                raise self._failure(exc) from exc
            parts.append(self._check(outputs, rows))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def score_async(
        self, inputs: Mapping[str, np.ndarray], item_ids: Sequence[str], *, timeout: float | None = None
    ) -> np.ndarray:
        """:meth:`score` through the async client (the same chunks, checks and errors)."""
        if self.async_client is None:
            raise RuntimeError("ServingScorer.score_async needs an async_client")
        parts = []
        for chunk, rows in self._chunks(inputs, len(item_ids)):
            try:
                outputs = await self.async_client.predict(
                    chunk, model_name=self.model_name, signature_name=self.signature_name, timeout=timeout
                )
            except self._error_type as exc:
                raise self._failure(exc) from exc
            parts.append(self._check(outputs, rows))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

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


def model_state(status: Any) -> str:
    """The state of the newest version from a model status answer in whatever shape the client gives.

    Accepts a GetModelStatus response message, TF Serving's REST JSON
    (``{"model_version_status": [{"version": ..., "state": ...}]}``) or a list of such entries.
    """
    entries = status
    if isinstance(status, Mapping):
        entries = status.get("model_version_status", [])
    elif hasattr(status, "model_version_status"):
        entries = status.model_version_status
    best: tuple[int, str] | None = None
    for entry in entries or []:
        version = entry.get("version") if isinstance(entry, Mapping) else getattr(entry, "version", 0)
        state = entry.get("state") if isinstance(entry, Mapping) else getattr(entry, "state", "")
        state_name = _state_name(state)
        version = int(version or 0)
        if state_name == "AVAILABLE" and (best is None or best[1] != "AVAILABLE" or version > best[0]):
            best = (version, state_name)
        elif best is None:
            best = (version, state_name)
    return best[1] if best else "UNAVAILABLE"


_STATE_NUMBERS = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


def _state_name(state: Any) -> str:
    if isinstance(state, str):
        return state.upper()
    if isinstance(state, int):
        return _STATE_NUMBERS.get(state, "UNKNOWN")
    name = getattr(state, "name", None)
    return str(name).upper() if name else str(state).upper()

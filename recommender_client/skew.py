"""Skew logging: a seeded sample of served requests' model inputs and scores, as size-capped JSON lines."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class SkewLogger:
    """Appends one JSON line per sampled request to ``path``, rotating at ``max_bytes``.

    Each line holds exactly what was sent to the model (every contract feature, one value per
    candidate row) and the scores it returned, so an offline job can re-score the same rows
    with the trained model and measure online/offline skew. Sampling draws from a
    ``numpy.random.Generator`` seeded with ``seed``, so a replay of the same traffic samples the
    same requests. Rotation keeps ``backups`` older files: ``path.1`` (newest) ... ``path.N``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rate: float,
        seed: int = 0,
        max_bytes: int = 10_000_000,
        backups: int = 3,
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"SkewLogger: rate must be in [0, 1], got {rate}")
        if max_bytes < 1 or backups < 0:
            raise ValueError("SkewLogger: max_bytes must be >= 1 and backups >= 0")
        self.path = Path(path)
        self.rate = rate
        self.max_bytes = max_bytes
        self.backups = backups
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.written = 0

    def sample(self) -> bool:
        """Draw whether the next request is logged (one draw per served request)."""
        with self._lock:
            return bool(self._rng.random() < self.rate)

    def write(
        self,
        *,
        timestamp: float,
        user_id: str,
        model: str,
        items: Sequence[str],
        inputs: Mapping[str, np.ndarray],
        scores: np.ndarray,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one record (the caller decided to log it with :meth:`sample`)."""
        record = {
            "timestamp": timestamp,
            "user_id": user_id,
            "model": model,
            "items": list(items),
            "features": {name: np.asarray(col).tolist() for name, col in inputs.items()},
            "scores": np.asarray(scores, dtype=np.float64).tolist(),
            **(extra or {}),
        }
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            with self.path.open("ab") as handle:
                handle.write(line)
            self.written += 1

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for k in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{k}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{k + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def read_skew_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of one skew log file (for offline analysis and tests)."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

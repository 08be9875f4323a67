"""Rotating JSON-lines logs written off the event loop, and a reader that survives a crash mid-write."""

# Why JSON lines and not Parquet: a record is appended as one line, so a crash can only leave
# an unterminated last line, which the reader skips; an open Parquet file is unreadable until its
# footer is written, so a crash loses the whole file. JSON lines also keep pyarrow (the training
# extra) out of the TensorFlow-free ranker; recsys-join-events writes the Parquet table offline.
#
# The event loop never touches the disk: records go into a bounded queue (QueueHandler) and one
# QueueListener thread serializes and writes them through logging.handlers.RotatingFileHandler.
# A full queue drops the record and counts it (``dropped``) instead of blocking a request.

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np


def jsonable(value: Any) -> Any:
    """numpy arrays and scalars as JSON values, in mappings too (NaN becomes null: JSON has no NaN)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [None if not np.isfinite(v) else v for v in value.astype(np.float64).tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: jsonable(v) for key, v in value.items()}
    return value


class _JsonFormatter(logging.Formatter):
    """Serializes the record's dict (``record.msg``) in the listener thread, off the event loop."""

    def format(self, record: logging.LogRecord) -> str:
        payload = record.msg if isinstance(record.msg, Mapping) else {"message": str(record.msg)}
        body = {key: jsonable(value) for key, value in payload.items()}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that drops (and counts) a record when the queue is full instead of raising."""

    def __init__(self, q: queue.Queue[Any]) -> None:
        super().__init__(q)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # the dict stays unformatted: the listener's formatter serializes it

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class JsonLinesLog:
    """Appends one JSON object a line to ``path``; rotates at ``max_bytes`` keeping ``backups`` files.

    Call :meth:`start` before :meth:`append` and :meth:`close` at shutdown (it writes what is
    queued). Files: ``path`` (being written), ``path.1`` (newest full one) ... ``path.N``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 100_000_000,
        backups: int = 10,
        queue_size: int = 10_000,
    ) -> None:
        if max_bytes < 1 or backups < 1 or queue_size < 1:
            raise ValueError("JsonLinesLog: need max_bytes >= 1, backups >= 1 and queue_size >= 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._handler = _BoundedQueueHandler(self._queue)
        # A Logger made directly, not through logging.getLogger: no process-global registration,
        # so two apps in one process (tests) never share handlers.
        self._logger = logging.Logger(f"recsys.jsonl.{self.path.name}")
        self._logger.propagate = False
        self._logger.addHandler(self._handler)
        self._listener: logging.handlers.QueueListener | None = None
        self._file: logging.Handler | None = None

    @property
    def dropped(self) -> int:
        """Records lost because the writer thread fell behind (the queue was full)."""
        return self._handler.dropped

    def start(self) -> Self:
        if self._listener is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8"
            )
            self._file.setFormatter(_JsonFormatter())
            self._listener = logging.handlers.QueueListener(self._queue, self._file)
            self._listener.start()
        return self

    def close(self) -> None:
        """Write every queued record, then close the file (calling it twice is harmless)."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: Mapping[str, Any]) -> None:
        """Queue one record (values: JSON types, numpy arrays or scalars)."""
        if self._listener is None:
            raise RuntimeError(f"{type(self).__name__}.append before start()")
        self._logger.info(record)


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """A log's files oldest first: ``path.N`` ... ``path.1``, then ``path`` itself."""
    base = Path(path)
    numbered = []
    for candidate in base.parent.glob(base.name + ".*"):
        suffix = candidate.name[len(base.name) + 1 :]
        if suffix.isdigit():
            numbered.append((int(suffix), candidate))
    files = [p for _, p in sorted(numbered, reverse=True)]
    return files + ([base] if base.exists() else [])


@dataclass
class ReadStats:
    """What a read kept and skipped: unterminated lines (a crash mid-write) and lines that do not parse."""

    records: int = 0
    truncated: int = 0
    corrupt: int = 0


def read_records(
    files: Sequence[Path], stats: ReadStats | None = None, *, key: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every complete JSON object of the files, in order; partial, corrupt and key-less lines skipped."""
    stats = stats if stats is not None else ReadStats()
    for file in files:
        with file.open("rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    stats.truncated += 1
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    stats.corrupt += 1
                    continue
                if not isinstance(record, dict) or (key is not None and key not in record):
                    stats.corrupt += 1
                    continue
                stats.records += 1
                yield record

"""The served-list and event logs read for the reports, every bad line named by file and line number.

Reading is ``recommender_client.jsonl_log.read_records`` (the reader recsys-join-events uses), one
file at a time: it counts each line it consumes in its ``ReadStats`` before yielding, so the sum of
the counts at a yield is the line number of the record yielded, and the lines counted corrupt since
the previous yield lie just before it. A torn last line (a crash mid-write) is normal and only
counted; a line that does not parse, or a record that lacks what the reports need, is skipped and
named; more than ``max_bad_lines`` of them is a :class:`LogError` (a log that broken is not a sample
to report on).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommender_client.jsonl_log import ReadStats, log_files, read_records

DEFAULT_ARM = "default"
SHOWN_PROBLEMS = 5  # bad lines quoted in messages and reports; the rest are counted


class LogError(ValueError):
    """A log is missing or has more bad lines than allowed; the message names file and line."""


@dataclass
class LogReport:
    """What reading one log kept, skipped and why (the first few bad lines as ``file:line: reason``)."""

    name: str
    records: int = 0
    torn: int = 0
    bad: int = 0
    problems: list[str] = field(default_factory=list)

    def add_problem(self, where: str, reason: str) -> None:
        self.bad += 1
        if len(self.problems) < SHOWN_PROBLEMS:
            self.problems.append(f"{where}: {reason}")

    def summary(self) -> str:
        text = (
            f"{self.name}: {self.records} records, {self.torn} torn last lines, {self.bad} bad lines skipped"
        )
        return text + "".join(f"\n  {p}" for p in self.problems)


Check = Callable[[dict[str, Any]], str | None]


def numbered_records(
    path: str | os.PathLike[str], *, key: str, check: Check, report: LogReport, max_bad_lines: int
) -> Iterator[dict[str, Any]]:
    """Every good record of a log (all its rotated files, oldest first); ``check`` returns a reason or None."""
    files = log_files(path)
    if not files:
        raise LogError(f"no log at {path} (nor rotated files {Path(path).name}.N)")
    for file in files:
        stats = ReadStats()
        seen_corrupt = 0
        for record in read_records([file], stats, key=key):
            line = stats.records + stats.truncated + stats.corrupt
            for k in range(stats.corrupt - seen_corrupt):  # the corrupt lines just before this one
                report.add_problem(f"{file}:{line - (stats.corrupt - seen_corrupt) + k}", _not_json(key))
            seen_corrupt = stats.corrupt
            reason = check(record)
            if reason is not None:
                report.add_problem(f"{file}:{line}", reason)
            else:
                report.records += 1
                yield record
            _bound(report, max_bad_lines)
        end = stats.records + stats.corrupt  # a torn line is the last one, after the corrupt ones
        for k in range(stats.corrupt - seen_corrupt):
            report.add_problem(f"{file}:{end - (stats.corrupt - seen_corrupt) + k + 1}", _not_json(key))
        report.torn += stats.truncated
        _bound(report, max_bad_lines)


def _not_json(key: str) -> str:
    return f"not a JSON object with {key!r}"


def _bound(report: LogReport, max_bad_lines: int) -> None:
    if report.bad > max_bad_lines:
        raise LogError(f"more than {max_bad_lines} bad lines (max_bad_lines) in {report.summary()}")


def served_problem(record: dict[str, Any]) -> str | None:
    """Why a served-list record cannot be used (aligned lists of one length, a features mapping)."""
    items = record.get("items")
    if not isinstance(items, list):
        return "'items' is not a list"
    for name in ("positions", "scores", "sent"):
        values = record.get(name)
        if not isinstance(values, list) or len(values) != len(items):
            return f"{name!r} is not a list of {len(items)} values like 'items'"
    features = record.get("features")
    if not isinstance(features, dict):
        return "'features' is not an object"
    for name, values in features.items():
        if not isinstance(values, list) or len(values) != len(items):
            return f"feature {name!r} is not a list of {len(items)} values like 'items'"
    if not all(isinstance(p, int) and p >= 0 for p in record["positions"]):
        return "'positions' holds a value that is not a non-negative integer"
    return None


def event_problem(record: dict[str, Any]) -> str | None:
    """Why an event record cannot be used (the fields ``read_events`` reads)."""
    for name in ("request_id", "item_id"):
        if not isinstance(record.get(name), str):
            return f"{name!r} is not a string"
    if record.get("type") not in ("impression", "click"):
        return f"'type' is {record.get('type')!r}, not 'impression' or 'click'"
    return None


def arm_of(record: dict[str, Any]) -> tuple[str, str]:
    """(experiment, arm) of a served list; logs written before experiments existed are ("-", "default")."""
    return str(record.get("experiment") or "-"), str(record.get("arm") or DEFAULT_ARM)


def served_arm_of(record: dict[str, Any]) -> str:
    """The arm whose model scored a list: ``served_arm`` (a canary's fallback is stable), else its arm."""
    return str(record.get("served_arm") or arm_of(record)[1])

"""recsys-join-events: served-list logs joined with /events into a labelled training table (Parquet).

One row per served item that was joined for scoring: its features exactly as the Predict request
carried them, ``clicked`` 1 when a click event names the same request id and item, else 0, plus
request_id, user_id, timestamp, model_name, model_version, position, propensity, score, degraded.

Impressions are implied by serving (the default): every served item counts as shown, because a
client may report clicks only. ``--require-impression`` keeps only items an impression event
confirms (use it when clients report impressions, e.g. for lists cut short on screen). Items a
pin brought in were never joined and have no served features: they are left out and counted.
Events are deduplicated by event_id, served lists by request_id (the first one is kept).
The table is written to ``OUT.tmp`` and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommender_client.jsonl_log import ReadStats, log_files, read_records
from training.atomic_files import atomic_path

META = (
    "request_id",
    "user_id",
    "timestamp",
    "model_name",
    "model_version",
    "position",
    "item_id",
    "propensity",
    "score",
    "degraded",
    "impressed",
    "clicked",
)


@dataclass
class JoinStats:
    """What the join read, kept and left out (printed at the end)."""

    served: ReadStats = field(default_factory=ReadStats)
    events: ReadStats = field(default_factory=ReadStats)
    duplicate_events: int = 0
    duplicate_requests: int = 0
    rows: int = 0
    clicks: int = 0
    not_joined: int = 0
    not_impressed: int = 0
    clicks_unmatched: int = 0


def read_events(
    records: Iterable[dict[str, Any]], stats: JoinStats
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(request_id, item_id) pairs clicked and pairs impressed, each event id counted once."""
    seen: set[str] = set()
    clicked: set[tuple[str, str]] = set()
    impressed: set[tuple[str, str]] = set()
    for event in records:
        if event["event_id"] in seen:
            stats.duplicate_events += 1
            continue
        seen.add(event["event_id"])
        key = (event["request_id"], event["item_id"])
        (clicked if event["type"] == "click" else impressed).add(key)
    return clicked, impressed


def first_per_request(
    served: Iterable[dict[str, Any]], on_duplicate: Callable[[], None]
) -> Iterator[dict[str, Any]]:
    """Each served-list record once: a request id seen before (a replayed or re-logged list) is
    skipped and ``on_duplicate`` called, so the join and the online report count the same lists."""
    requests: set[str] = set()
    for record in served:
        rid = record["request_id"]
        if rid in requests:
            on_duplicate()
            continue
        requests.add(rid)
        yield record


def join(
    served: Iterable[dict[str, Any]],
    clicked: set[tuple[str, str]],
    impressed: set[tuple[str, str]],
    *,
    require_impression: bool,
    stats: JoinStats,
) -> dict[str, list[Any]]:
    """The training table as column lists (meta columns, then one column per served feature)."""
    columns: dict[str, list[Any]] = {name: [] for name in META}
    features: dict[str, list[Any]] = {}
    matched: set[tuple[str, str]] = set()

    def duplicate() -> None:
        stats.duplicate_requests += 1

    for record in first_per_request(served, duplicate):
        rid = record["request_id"]
        names = record["features"]
        for k, item in enumerate(record["items"]):
            key = (rid, item)
            if not names or any(names[n][k] is None for n in names):
                stats.not_joined += 1
                continue
            if require_impression and key not in impressed:
                stats.not_impressed += 1
                continue
            label = int(key in clicked)
            matched.add(key)
            row = {
                "request_id": rid,
                "user_id": record["user_id"],
                "timestamp": record["timestamp"],
                "model_name": record["model_name"],
                "model_version": record["model_version"],
                "position": record["positions"][k],
                "item_id": item,
                "propensity": record["propensities"][k],
                "score": record["scores"][k],
                "degraded": record["degraded"],
                "impressed": key in impressed,
                "clicked": label,
            }
            for name, value in row.items():
                columns[name].append(value)
            for name in names:
                features.setdefault(name, [None] * stats.rows).append(names[name][k])
            stats.rows += 1
            stats.clicks += label
    stats.clicks_unmatched = len(clicked - matched)
    for name, values in features.items():
        values.extend([None] * (stats.rows - len(values)))
        columns[f"f_{name}" if name in columns else name] = values
    return columns


def write_parquet(columns: dict[str, list[Any]], out: Path) -> None:
    """Write the table to ``out`` through a temporary file in the same folder, then rename (``atomic_path``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(out) as tmp:
        pq.write_table(pa.table(columns), tmp)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recsys-join-events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--served", type=Path, required=True, help="served-list log (RANKER_SERVED_LOG_PATH)")
    parser.add_argument("--events", type=Path, required=True, help="event log (RANKER_EVENTS_LOG_PATH)")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    parser.add_argument(
        "--require-impression",
        action="store_true",
        help="keep only served items an impression event confirms (default: serving implies it)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    stats = JoinStats()
    served_files, event_files = log_files(args.served), log_files(args.events)
    if not served_files:
        print(f"error: no served log at {args.served}", file=sys.stderr)
        return 2
    events = tqdm(
        read_records(event_files, stats.events, key="event_id"), desc="events", unit=" ev", disable=args.quiet
    )
    clicked, impressed = read_events(events, stats)
    served = tqdm(
        read_records(served_files, stats.served, key="request_id"),
        desc="served lists",
        unit=" req",
        disable=args.quiet,
    )
    columns = join(served, clicked, impressed, require_impression=args.require_impression, stats=stats)
    write_parquet(columns, args.out)
    print(
        f"{args.out}: {stats.rows} rows, {stats.clicks} clicked, from {stats.served.records} served lists "
        f"and {stats.events.records} events; left out: {stats.not_joined} items never joined (pinned in), "
        f"{stats.not_impressed} without impression, {stats.duplicate_requests} repeated request ids, "
        f"{stats.duplicate_events} repeated event ids; {stats.clicks_unmatched} clicks matched no served item; "
        f"{stats.served.truncated + stats.events.truncated} torn and "
        f"{stats.served.corrupt + stats.events.corrupt} unreadable lines skipped",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

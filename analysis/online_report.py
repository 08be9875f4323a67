"""Online CTR per experiment arm and per position from served lists and click events, with intervals and tests.

An impression is a served position (serving implies showing, as in recsys-join-events) or, with
``require_impression``, only one an impression event confirms. A click counts when an event of
type click names the request id and item of a served position; events are deduplicated by event
id (``join_events.read_events``) and served lists by request id (the first is kept). Degraded
lists (the fallback order) and lists a canary's stable arm scored (``served_arm``) stay in the
arm the user was assigned (``arm``): the user saw them, so dropping them would flatter an arm
whose model fails; both are counted per arm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from analysis.stats import ZTest, two_proportion_z_test, wilson_interval
from recommender_client.join_events import first_per_request

Arm = tuple[str, str]  # (experiment, arm)


@dataclass
class Cell:
    """Impressions and clicks of one arm (and position)."""

    impressions: int = 0
    clicks: int = 0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


@dataclass
class ArmStats:
    """One arm's totals, per-position cells, how many lists were degraded and which models served."""

    total: Cell = field(default_factory=Cell)
    positions: dict[int, Cell] = field(default_factory=dict)
    requests: int = 0
    degraded: int = 0
    fell_back: int = 0  # lists another arm's model scored (a canary falling back to stable)
    models: set[str] = field(default_factory=set)


@dataclass
class OnlineCounts:
    """Counts per arm plus what the join left out."""

    arms: dict[Arm, ArmStats] = field(default_factory=dict)
    duplicate_requests: int = 0
    not_impressed: int = 0
    clicks_unmatched: int = 0


def count(
    served: Iterable[dict[str, Any]],
    clicked: set[tuple[str, str]],
    impressed: set[tuple[str, str]],
    *,
    arm_of: Any,
    require_impression: bool = False,
    max_position: int = 20,
) -> OnlineCounts:
    """Impressions and clicks per arm and position; positions from ``max_position`` on share one cell."""
    out = OnlineCounts()
    matched: set[tuple[str, str]] = set()

    def duplicate() -> None:
        out.duplicate_requests += 1

    for record in first_per_request(served, duplicate):
        rid = record["request_id"]
        arm = out.arms.setdefault(arm_of(record), ArmStats())
        arm.requests += 1
        arm.degraded += bool(record.get("degraded"))
        arm.fell_back += record.get("served_arm") not in (None, record.get("arm"))
        if record.get("model_name") is not None:
            arm.models.add(f"{record['model_name']}:{record.get('model_version')}")
        for item, position in zip(record["items"], record["positions"], strict=True):
            key = (rid, item)
            if require_impression and key not in impressed:
                out.not_impressed += 1
                continue
            click = key in clicked
            if click:
                matched.add(key)
            for cell in (arm.total, arm.positions.setdefault(min(position, max_position), Cell())):
                cell.impressions += 1
                cell.clicks += click
    out.clicks_unmatched = len(clicked - matched)
    return out


@dataclass(frozen=True)
class Comparison:
    """Arm ``b`` against arm ``a`` of one experiment."""

    experiment: str
    a: str
    b: str
    test: ZTest


def comparisons(counts: OnlineCounts) -> list[Comparison]:
    """Every pair of arms within each experiment (arms in name order, so ``a`` sorts first)."""
    out = []
    experiments = sorted({exp for exp, _ in counts.arms})
    for exp in experiments:
        names = sorted(name for e, name in counts.arms if e == exp)
        for a, b in combinations(names, 2):
            ca, cb = counts.arms[(exp, a)].total, counts.arms[(exp, b)].total
            if ca.impressions and cb.impressions:
                test = two_proportion_z_test(ca.clicks, ca.impressions, cb.clicks, cb.impressions)
                out.append(Comparison(exp, a, b, test))
    return out


def summary(counts: OnlineCounts, confidence: float) -> dict[str, Any]:
    """The report's numbers as JSON: per arm totals and positions with Wilson intervals, and the tests."""

    def cell(c: Cell) -> dict[str, Any]:
        low, high = wilson_interval(c.clicks, c.impressions, confidence)
        return {
            "impressions": c.impressions,
            "clicks": c.clicks,
            "ctr": c.ctr,
            "ci_low": low,
            "ci_high": high,
        }

    arms = []
    for (exp, name), stats in sorted(counts.arms.items()):
        arms.append(
            {
                "experiment": exp,
                "arm": name,
                "requests": stats.requests,
                "degraded": stats.degraded,
                "fell_back": stats.fell_back,
                "models": sorted(stats.models),
                **cell(stats.total),
                "positions": {str(p): cell(c) for p, c in sorted(stats.positions.items())},
            }
        )
    tests = [
        {
            "experiment": c.experiment,
            "a": c.a,
            "b": c.b,
            "diff": c.test.diff,
            "z": c.test.z,
            "p_value": c.test.p_value,
        }
        for c in comparisons(counts)
    ]
    return {
        "confidence": confidence,
        "arms": arms,
        "tests": tests,
        "duplicate_requests": counts.duplicate_requests,
        "not_impressed": counts.not_impressed,
        "clicks_unmatched": counts.clicks_unmatched,
    }

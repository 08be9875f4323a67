"""recsys-online-report: CTR per experiment arm and position, with Wilson intervals and z-tests, as Markdown and PNG.

Reads the served-list log (RANKER_SERVED_LOG_PATH) and the event log (RANKER_EVENTS_LOG_PATH),
rotated files included, and writes OUT/report.md, OUT/summary.json, OUT/ctr_by_arm.png and
OUT/ctr_by_position.png, each through a temporary file and a rename. Bad log lines are skipped
and counted; more than --max-bad-lines of them in a log is an error (exit 2) naming file and line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.logs import LogError, LogReport, arm_of, event_problem, numbered_records, served_problem
from analysis.online_report import count, summary
from analysis.report_files import markdown_table, new_figure, save_json, save_png, save_text
from recommender_client.join_events import JoinStats, read_events


@dataclass(frozen=True)
class OnlineReportConfig:
    """Everything one run of the report needs (built from the command line)."""

    served: Path
    events: Path
    out: Path
    require_impression: bool = False
    confidence: float = 0.95
    max_position: int = 20
    max_bad_lines: int = 100


def build(config: OnlineReportConfig) -> dict[str, Any]:
    """Read both logs, count, write the report folder; returns the summary (also summary.json)."""
    served_log, events_log = LogReport(str(config.served)), LogReport(str(config.events))
    events = numbered_records(
        config.events,
        key="event_id",
        check=event_problem,
        report=events_log,
        max_bad_lines=config.max_bad_lines,
    )
    clicked, impressed = read_events(events, JoinStats())
    served = numbered_records(
        config.served,
        key="request_id",
        check=served_problem,
        report=served_log,
        max_bad_lines=config.max_bad_lines,
    )
    counts = count(
        served,
        clicked,
        impressed,
        arm_of=arm_of,
        require_impression=config.require_impression,
        max_position=config.max_position,
    )
    data = summary(counts, config.confidence)
    data["logs"] = [vars(served_log), vars(events_log)]
    config.out.mkdir(parents=True, exist_ok=True)
    plot_arms(data, config.out / "ctr_by_arm.png")
    plot_positions(data, config.out / "ctr_by_position.png")
    save_json(config.out / "summary.json", data)
    save_text(config.out / "report.md", markdown(data, config, [served_log, events_log]))
    return data


def _label(arm: dict[str, Any]) -> str:
    return arm["arm"] if arm["experiment"] == "-" else f"{arm['experiment']}/{arm['arm']}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def markdown(data: dict[str, Any], config: OnlineReportConfig, logs: Sequence[LogReport]) -> str:
    level = f"{100 * data['confidence']:g}%"
    arms = [
        [
            _label(a),
            ", ".join(a["models"]) or "-",
            a["requests"],
            a["degraded"],
            a["fell_back"],
            a["impressions"],
            a["clicks"],
            _pct(a["ctr"]),
            f"[{_pct(a['ci_low'])}, {_pct(a['ci_high'])}]",
        ]
        for a in data["arms"]
    ]
    positions = [
        [
            _label(a),
            p,
            c["impressions"],
            c["clicks"],
            _pct(c["ctr"]),
            f"[{_pct(c['ci_low'])}, {_pct(c['ci_high'])}]",
        ]
        for a in data["arms"]
        for p, c in a["positions"].items()
    ]
    tests = [
        [
            t["experiment"],
            t["a"],
            t["b"],
            f"{100 * t['diff']:+.2f} pt",
            f"{t['z']:.3f}",
            f"{t['p_value']:.4g}",
        ]
        for t in data["tests"]
    ]
    shown = "impression events" if config.require_impression else "served positions (serving implies showing)"
    parts = [
        "# Online CTR report",
        f"Impressions: {shown}. Intervals: Wilson score, {level}. Tests: pooled two-proportion z-test, "
        "two-sided, impressions taken as independent (clicks within one list are not quite, so p-values "
        "are somewhat optimistic for long lists).",
        "## CTR per arm",
        markdown_table(
            [
                "arm",
                "models",
                "requests",
                "degraded",
                "fell back",
                "impressions",
                "clicks",
                "CTR",
                f"{level} CI",
            ],
            arms,
        ),
        "![CTR per arm](ctr_by_arm.png)",
        "## Arm against arm",
        markdown_table(["experiment", "a", "b", "CTR b - a", "z", "p-value"], tests)
        if tests
        else "One arm only.",
        "## CTR per position",
        f"Positions from {config.max_position} on share the last row.",
        markdown_table(["arm", "position", "impressions", "clicks", "CTR", f"{level} CI"], positions),
        "![CTR per position](ctr_by_position.png)",
        "## Inputs",
        "\n".join(f"- {log.summary()}".replace("\n  ", "\n  - ") for log in logs),
        f"- {data['duplicate_requests']} repeated request ids skipped, {data['not_impressed']} served positions "
        f"without an impression event left out, {data['clicks_unmatched']} clicks matched no served position.",
    ]
    return "\n\n".join(parts) + "\n"


def plot_arms(data: dict[str, Any], path: Path) -> None:
    figure = new_figure()
    axes = figure.add_subplot()
    arms = data["arms"]
    ctr = [a["ctr"] for a in arms]
    errors = [[a["ctr"] - a["ci_low"] for a in arms], [a["ci_high"] - a["ctr"] for a in arms]]
    axes.bar([_label(a) for a in arms], ctr, yerr=errors, capsize=6, color="tab:blue")
    axes.set_ylabel("CTR")
    axes.set_title(f"CTR per arm ({100 * data['confidence']:g}% Wilson intervals)")
    save_png(figure, path)


def plot_positions(data: dict[str, Any], path: Path) -> None:
    figure = new_figure()
    axes = figure.add_subplot()
    for arm in data["arms"]:
        cells = arm["positions"]
        x = [int(p) for p in cells]
        axes.plot(x, [c["ctr"] for c in cells.values()], marker="o", label=_label(arm))
        axes.fill_between(
            x, [c["ci_low"] for c in cells.values()], [c["ci_high"] for c in cells.values()], alpha=0.2
        )
    axes.set_xlabel("position (0 = top)")
    axes.set_ylabel("CTR")
    axes.set_title("CTR per position")
    axes.legend()
    save_png(figure, path)


def parse_args(argv: Sequence[str] | None) -> OnlineReportConfig:
    parser = argparse.ArgumentParser(prog="recsys-online-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--served", type=Path, required=True, help="served-list log (RANKER_SERVED_LOG_PATH)")
    parser.add_argument("--events", type=Path, required=True, help="event log (RANKER_EVENTS_LOG_PATH)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md, summary.json and PNGs")
    parser.add_argument(
        "--require-impression",
        action="store_true",
        help="count only served positions an impression event confirms (default: serving implies it)",
    )
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument(
        "--max-position", type=int, default=20, help="positions from this one on share a row (default 20)"
    )
    parser.add_argument(
        "--max-bad-lines",
        type=int,
        default=100,
        help="bad lines a log may have before the run fails (default 100)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.confidence < 1:
        parser.error(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.max_position < 0 or args.max_bad_lines < 0:
        parser.error("--max-position and --max-bad-lines must be >= 0")
    return OnlineReportConfig(**vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        data = build(config)
    except LogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for arm in data["arms"]:
        print(
            f"{_label(arm)}: {arm['impressions']} impressions, {arm['clicks']} clicks, CTR {_pct(arm['ctr'])}",
            file=sys.stderr,
        )
    print(f"wrote {config.out / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

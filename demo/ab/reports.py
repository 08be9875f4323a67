"""The A/B's reading: recsys-online-report over both arms, recsys-skew-report per arm, and a summary."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.ab.config import ABConfig
from demo.ab.offline import ARMS, VERSIONS, OfflinePaths
from demo.ab.online import OnlinePaths
from demo.run import module, run, step


@dataclass(frozen=True)
class ReportPaths:
    online: Path
    skew: dict[str, Path]


def arm_training_table(run_dir: Path, experiments: Path, arm: str, target: Path) -> Path:
    """The run's training rows of the users the experiment puts in ``arm`` (Parquet at ``target``).

    Users are split by a hash of their id, so each heavy user is in one arm only: one arm's lists
    against the whole training split differ in their user mix (``user_id`` PSI ~0.3 in both
    arms here), which is the split, not a skew. Against the rows of the arm's own users only the
    features served differently stand out. Rows whose user id is blank (the cold-start copies
    training adds) belong to no user and stay in every arm's table.
    """
    from export.run_dir import CONFIG_FILENAME, load_split
    from recommender_client.experiments import Assigner, load_experiments
    from training.data.base import atomic_write_parquet

    experiment = load_experiments(experiments)
    assert experiment is not None, f"{experiments} names no active experiment"
    assigner = Assigner(experiment)
    frame = load_split(json.loads((run_dir / CONFIG_FILENAME).read_text(encoding="utf-8")), "train")
    users = frame["user_id"]
    mine = [u for u in users.unique() if u != "" and assigner.assign(u).name == arm]
    keep = (users == "") | users.isin(mine)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(frame[keep.to_numpy()].reset_index(drop=True), target)
    return target


def write_reports(cfg: ABConfig, paths: OfflinePaths, online: OnlinePaths) -> ReportPaths:
    """Both reports, each a folder of report.md, summary.json and PNGs written atomically."""
    shutil.rmtree(cfg.out / "reports", ignore_errors=True)  # no plot left over from an earlier run
    out = ReportPaths(
        online=cfg.out / "reports" / "online", skew={arm: cfg.out / "reports" / f"skew-{arm}" for arm in ARMS}
    )
    step("9. recsys-online-report: CTR per arm and position, the two-proportion test")
    run(
        module(
            "analysis.online_cli",
            *("--served", str(online.served_log), "--events", str(online.events_log)),
            *("--out", str(out.online), "--require-impression"),
        ),
        who="simulate-ab",
    )
    step("10. recsys-skew-report per arm: served features against the arm's users' training rows, replayed")
    tables = {
        arm: arm_training_table(
            paths.runs[arm], online.experiments, arm, cfg.out / "reports" / f"train-{arm}.parquet"
        )
        for arm in ARMS
    }
    for arm in ARMS:
        # exit 1 means something was flagged: the finding, not a failure
        run(
            module(
                "analysis.skew_cli",
                *("--served", str(online.served_log), "--arm", arm),
                *("--training-table", str(tables[arm])),
                *("--model", str(paths.base / cfg.model_name / str(VERSIONS[arm]))),
                *("--seed", str(cfg.seed), "--out", str(out.skew[arm])),
            ),
            ok=frozenset({0, 1}),
            who="simulate-ab",
        )
    return out


def read_summary(reports: ReportPaths, auc: dict[str, float], tally: dict[str, Any]) -> dict[str, Any]:
    """The numbers the A/B prints (and writes as summary.json): offline AUC, online CTR, the flags."""
    online = json.loads((reports.online / "summary.json").read_text(encoding="utf-8"))
    arms = {a["arm"]: a for a in online["arms"]}
    (test,) = online["tests"]
    summary: dict[str, Any] = {"arms": {}, "test": test, "simulator": tally}
    for arm in ARMS:
        skew = json.loads((reports.skew[arm] / "summary.json").read_text(encoding="utf-8"))
        a = arms[arm]
        summary["arms"][arm] = {
            "offline_auc": auc[arm],
            **{
                k: a[k] for k in ("requests", "impressions", "clicks", "ctr", "ci_low", "ci_high", "degraded")
            },
            "skew_flagged": skew["flagged"],
            "replay_max_abs_diff": (skew["replay"] or {}).get("max_abs_diff"),
        }
    summary["reports"] = {
        "online": str(reports.online / "report.md"),
        **{f"skew_{arm}": str(reports.skew[arm] / "report.md") for arm in ARMS},
    }
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    step("summary")
    print(
        f"  {'arm':<7} {'offline AUC':>11} {'impressions':>11} {'clicks':>7} {'CTR':>7}  95% CI           skew flags"
    )
    for arm, a in summary["arms"].items():
        print(
            f"  {arm:<7} {a['offline_auc']:>11.4f} {a['impressions']:>11} {a['clicks']:>7} {a['ctr']:>7.4f}  "
            f"[{a['ci_low']:.4f}, {a['ci_high']:.4f}] {', '.join(a['skew_flagged']) or 'none'}"
        )
    seen = summary["simulator"]["arms"]
    expected = ", ".join(f"{arm} {s['expected_clicks'] / s['impressions']:.4f}" for arm, s in seen.items())
    print(f"  expected CTR from the world's true click probabilities (no click noise): {expected}")
    t = summary["test"]
    print(
        f"  two-proportion z-test {t['b']} - {t['a']}: diff {t['diff']:+.4f}, z {t['z']:.2f}, p {t['p_value']:.3g}"
    )
    for name, path in summary["reports"].items():
        print(f"  {name} report: {path}")

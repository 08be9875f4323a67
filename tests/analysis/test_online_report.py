"""recsys-online-report on logs the real writers wrote: counts, Wilson intervals and z-test by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.online_cli import main
from analysis.stats import two_proportion_z_test, wilson_interval
from recommender_client.served_log import ServedLog
from tests.analysis.logwriters import click, post_events, write_list

ITEMS = [f"i{k}" for k in range(10)]


def write_ab(tmp_path: Path) -> tuple[Path, Path]:
    """stable: 100 lists, clicks at position 0 in 50; canary: the same plus position 1 in 30 more.

    Totals by hand: stable 50 clicks / 1000 impressions, canary 80 / 1000; position 0 CTR 0.5 in
    both, position 1: stable 0 / 100, canary 30 / 100.
    """
    served, events = tmp_path / "logs" / "served.jsonl", tmp_path / "logs" / "events.jsonl"
    clicks = []
    for arm in ("stable", "canary"):
        log = ServedLog(served).start()
        for i in range(100):
            # canary lists 90-99 fell back to the stable model: they stay in the canary arm
            fell_back = arm == "canary" and i >= 90
            write_list(
                log,
                f"{arm}-{i}",
                ITEMS,
                experiment="exp1",
                arm=arm,
                served_arm="stable" if fell_back else arm,
            )
            if i < 50:
                clicks.append(click(f"{arm}-{i}-c0", f"{arm}-{i}", "i0", 0))
            if arm == "canary" and i < 30:
                clicks.append(click(f"{arm}-{i}-c1", f"{arm}-{i}", "i1", 1))
        if arm == "canary":
            write_list(
                log, "canary-0", ["i0"], experiment="exp1", arm=arm
            )  # a repeated request id: the first list is kept
        log.close()
    clicks.append(clicks[0])  # the same event sent twice counts once
    clicks.append(click("lost", "never-served", "i0", 0))  # matches no served position
    clicks.append(click("imp", "stable-0", "i0", 0, kind="impression"))
    post_events(tmp_path, events, clicks)
    return served, events


def test_wilson_and_z_by_hand() -> None:
    # 50 / 1000 at 95%: z = 1.959964, centre (0.05 + z^2/2000) / (1 + z^2/1000) = 0.0517220,
    # half z * sqrt(0.05 * 0.95 / 1000 + z^2 / 4e6) / (1 + z^2/1000) = 0.0135917
    low, high = wilson_interval(50, 1000)
    assert low == pytest.approx(0.0517220 - 0.0135917, abs=1e-6)
    assert high == pytest.approx(0.0517220 + 0.0135917, abs=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 0) == (0.0, 1.0)
    # pooled 130 / 2000 = 0.065, se = sqrt(0.065 * 0.935 * 2 / 1000) = 0.0110250, z = 0.03 / se
    test = two_proportion_z_test(50, 1000, 80, 1000)
    assert test.diff == pytest.approx(0.03) and test.z == pytest.approx(0.03 / 0.0110250, rel=1e-5)
    assert test.p_value == pytest.approx(math.erfc(test.z / math.sqrt(2)), rel=1e-9)
    assert two_proportion_z_test(0, 10, 0, 20).p_value == 1.0


def test_statistics_agree_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, n, level in ((50, 1000, 0.95), (3, 17, 0.9), (17, 17, 0.99)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
        assert wilson_interval(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-12)
    z = two_proportion_z_test(50, 1000, 80, 1000).z
    assert two_proportion_z_test(50, 1000, 80, 1000).p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)


def test_report_counts_arms_positions_and_tests(tmp_path: Path) -> None:
    served, events = write_ab(tmp_path)
    out = tmp_path / "report"
    assert main(["--served", str(served), "--events", str(events), "--out", str(out)]) == 0
    data = json.loads((out / "summary.json").read_text())
    arms = {a["arm"]: a for a in data["arms"]}
    assert (arms["stable"]["impressions"], arms["stable"]["clicks"]) == (1000, 50)
    assert (arms["canary"]["impressions"], arms["canary"]["clicks"]) == (1000, 80)
    assert arms["canary"]["requests"] == 100 and arms["canary"]["models"] == ["ctr:1"]
    assert arms["canary"]["fell_back"] == 10 and arms["stable"]["fell_back"] == 0
    assert arms["stable"]["ci_low"] == pytest.approx(0.0381303, abs=1e-6)
    assert arms["canary"]["positions"]["1"] == pytest.approx(
        {
            "impressions": 100,
            "clicks": 30,
            "ctr": 0.3,
            "ci_low": wilson_interval(30, 100)[0],
            "ci_high": wilson_interval(30, 100)[1],
        }
    )
    assert arms["stable"]["positions"]["1"]["clicks"] == 0 and arms["stable"]["positions"]["0"]["ctr"] == 0.5
    (test,) = data["tests"]
    assert (test["a"], test["b"]) == ("canary", "stable")  # name order: b - a = 0.05 - 0.08
    assert test["diff"] == pytest.approx(-0.03) and test["z"] == pytest.approx(-0.03 / 0.0110250, rel=1e-5)
    assert data["duplicate_requests"] == 1 and data["clicks_unmatched"] == 1
    report = (out / "report.md").read_text()
    assert "| exp1/canary | ctr:1 | 100 | 0 | 10 | 1000 | 80 | 8.00% | [6.47%, 9.85%] |" in report
    assert "| exp1 | canary | stable | -3.00 pt | -2.721 | 0.006" in report
    for png in ("ctr_by_arm.png", "ctr_by_position.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "ctr_by_arm.png",
        "ctr_by_position.png",
        "report.md",
        "summary.json",
    ]  # no temporary file left behind


def test_confirmed_impressions_only(tmp_path: Path) -> None:
    served, events = write_ab(tmp_path)
    out = tmp_path / "report"
    args = ["--served", str(served), "--events", str(events), "--out", str(out), "--require-impression"]
    assert main(args) == 0
    arms = {a["arm"]: a for a in json.loads((out / "summary.json").read_text())["arms"]}
    assert (arms["stable"]["impressions"], arms["stable"]["clicks"]) == (1, 1) and arms["canary"][
        "impressions"
    ] == 0


def test_a_log_without_arms_is_the_default_arm(tmp_path: Path) -> None:
    served, events = tmp_path / "served.jsonl", tmp_path / "events.jsonl"
    log = ServedLog(served).start()
    write_list(log, "r1", ["a", "b"])
    log.close()
    post_events(tmp_path, events, [click("e1", "r1", "b", 1)])
    assert main(["--served", str(served), "--events", str(events), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(a["experiment"], a["arm"], a["clicks"]) for a in data["arms"]] == [("-", "default", 1)]
    assert data["tests"] == [] and "One arm only." in (tmp_path / "out" / "report.md").read_text()


def test_bad_lines_are_named_counted_and_bounded(tmp_path: Path, capsys) -> None:
    served, events = write_ab(tmp_path)
    lines = served.read_text().splitlines(keepends=True)
    lines[2] = "{not json\n"  # line 3
    lines[4] = json.dumps({"request_id": "x", "items": ["a"], "positions": [0]}) + "\n"  # line 5
    served.write_text("".join(lines) + '{"request_id": "torn"')
    out = tmp_path / "report"
    assert main(["--served", str(served), "--events", str(events), "--out", str(out)]) == 0
    (log, _) = json.loads((out / "summary.json").read_text())["logs"]
    assert (log["records"], log["bad"], log["torn"]) == (199, 2, 1)
    assert log["problems"] == [
        f"{served}:3: not a JSON object with 'request_id'",
        f"{served}:5: 'scores' is not a list of 1 values like 'items'",
    ]
    assert f"{served}:3" in (out / "report.md").read_text()
    assert (
        main(["--served", str(served), "--events", str(events), "--out", str(out), "--max-bad-lines", "1"])
        == 2
    )
    assert f"more than 1 bad lines (max_bad_lines) in {served}" in capsys.readouterr().err


def test_missing_log_and_help(tmp_path: Path, capsys) -> None:
    assert (
        main(["--served", str(tmp_path / "nope"), "--events", str(tmp_path / "e"), "--out", str(tmp_path)])
        == 2
    )
    assert f"no log at {tmp_path / 'e'}" in capsys.readouterr().err  # the events are read first
    done = subprocess.run(
        [sys.executable, "-m", "analysis.online_cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--require-impression" in done.stdout and "--max-bad-lines" in done.stdout


def test_report_over_the_real_app(artifacts_dir: Path, tmp_path: Path) -> None:
    """/recommend and /events of the app (LocalScorer) write the logs; the report counts them."""
    from tests.recommender_client.test_online_loop import app_for, event

    with app_for(artifacts_dir, tmp_path) as client:
        for rid, user in (("r1", "u2"), ("r2", "u1"), ("r3", "u3")):
            client.post("/recommend", json={"user_id": user, "k": 3}, headers={"X-Request-Id": rid})
        first = client.post(
            "/recommend", json={"user_id": "u2", "k": 3}, headers={"X-Request-Id": "r4"}
        ).json()
        clicked = first["items"][1]["item_id"]
        events = [event(event_id="c1", request_id="r4", item_id=clicked, position=1)]
        assert client.post("/events", json={"events": events}).json()["accepted"] == 1
    logs, out = tmp_path / "logs", tmp_path / "report"
    assert (
        main(
            [
                "--served",
                str(logs / "served.jsonl"),
                "--events",
                str(logs / "events.jsonl"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (arm,) = json.loads((out / "summary.json").read_text())["arms"]
    assert (arm["arm"], arm["requests"], arm["impressions"], arm["clicks"]) == ("default", 4, 12, 1)
    assert arm["positions"]["1"]["clicks"] == 1 and arm["positions"]["1"]["impressions"] == 4

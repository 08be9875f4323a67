"""Experiment files and arm assignment (issue 19 item 1): located errors, a stable hash, honoured shares."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from recommender_client.experiments import Assigner, ExperimentError, load_experiments, parse_experiments

REPO = Path(__file__).resolve().parents[2]


def split(*shares: float, salt: str = "s1", **arm: object) -> dict:
    arms = [{"name": f"a{k}", "share": s} for k, s in enumerate(shares)]
    arms[-1].update(arm)
    return {"active": "exp", "experiments": [{"name": "exp", "salt": salt, "arms": arms}]}


def by_hand(user_id: str, salt: str, shares: list[float]) -> int:
    """The arm index computed independently: blake2b's 8 bytes as a fraction of 2**64 against the
    cumulative shares (floats, not the assigner's integer bounds)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=salt.encode()).digest()
    u = int.from_bytes(digest, "big") / 2**64
    total = 0.0
    for k, share in enumerate(shares[:-1]):
        total += share
        if u < total:
            return k
    return len(shares) - 1


def test_shares_are_honoured_within_one_percent_on_100k_users() -> None:
    shares = [0.5, 0.3, 0.15, 0.05]
    assigner = Assigner(parse_experiments(split(*shares)))
    users = [f"user-{k}" for k in range(100_000)]
    counts = Counter(assigner.assign(u).name for u in users)
    for k, share in enumerate(shares):
        assert abs(counts[f"a{k}"] / len(users) - share) <= 0.01, (k, counts)
    # the same arms as the independent computation, for every one of the users
    picks = [int(assigner.assign(u).name[1:]) for u in users[:5000]]
    assert picks == [by_hand(u, "s1", shares) for u in users[:5000]]


def test_assignment_is_stable_across_processes_and_changes_with_the_salt(tmp_path: Path) -> None:
    experiment = parse_experiments(split(0.5, 0.5))
    users = [f"u{k}" for k in range(2000)]
    here = [Assigner(experiment).assign(u).name for u in users]
    assert here == [Assigner(experiment).assign(u).name for u in users]
    code = (
        "from recommender_client.experiments import Assigner, parse_experiments\n"
        "from tests.recommender_client.test_experiments import split\n"
        "a = Assigner(parse_experiments(split(0.5, 0.5)))\n"
        "print(','.join(a.assign(f'u{k}').name for k in range(2000)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another hash() seed: no effect on arms
    other = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip().split(",") == here
    salted = [Assigner(parse_experiments(split(0.5, 0.5, salt="s2"))).assign(u).name for u in users]
    moved = sum(a != b for a, b in zip(here, salted, strict=True)) / len(users)
    assert 0.4 < moved < 0.6  # a new salt reshuffles about half the users of a 50/50 split


def test_a_zero_share_arm_gets_nobody_and_the_salt_defaults_to_the_name() -> None:
    data = split(1.0, 0.0)
    del data["experiments"][0]["salt"]
    experiment = parse_experiments(data)
    assert experiment is not None and experiment.salt == "exp" and experiment.stable == "a0"
    assert {Assigner(experiment).assign(f"u{k}").name for k in range(3000)} == {"a0"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (split(0.5, 0.4), r"exp.*experiments\[0\]: arm shares must sum to 1, they sum to 0\.9"),
        (split(1.5, -0.5), r"experiments\[0\]\.arms\[0\]\.share: Input should be less than or equal to 1"),
        (
            split(0.5, 0.5, version=2, version_label="canary"),
            r"experiments\[0\]\.arms\[1\]: give version or version_label, not both",
        ),
        (split(0.5, 0.5, weight=1), r"experiments\[0\]\.arms\[1\]\.weight: Extra inputs are not permitted"),
        (split(0.5, 0.5, name="a0"), r"experiments\[0\]: arm names must be unique, repeated: \['a0'\]"),
        (split(0.5, 0.5, name="bad name"), r"experiments\[0\]\.arms\[1\]\.name: String should match"),
        ({**split(1.0), "active": "nope"}, r"\(file\): active names no experiment: 'nope'"),
        ({"experiments": []}, r"active: Field required"),
    ],
)
def test_errors_name_their_location(data: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        parse_experiments(data, source="exp.yaml")


def test_the_file_is_yaml_and_active_null_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(
        "active: null\nexperiments:\n  - name: e1\n    stable: s\n    arms:\n"
        "      - {name: c, share: 0.1, version_label: canary}\n      - {name: s, share: 0.9}\n"
    )
    assert load_experiments(path) is None
    path.write_text(path.read_text().replace("active: null", "active: e1"))
    experiment = load_experiments(path)
    assert experiment is not None and experiment.stable_arm.name == "s"
    assert experiment.arms[0].version_label == "canary" and not experiment.arms[0].selects_default
    path.write_text("active: [unclosed\n")
    with pytest.raises(ExperimentError, match="cannot read the experiments file"):
        load_experiments(path)

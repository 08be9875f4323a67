"""recsys-skew-report: PSI by hand, a planted shift flagged exactly, and the replay through a real export."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.skew_cli import main
from analysis.skew_stats import fit_binning, oov_rate, psi
from recommender_client.served_log import ServedLog
from tests.analysis.logwriters import write_list
from training.features import Feature, FeatureContract

CONTRACT = FeatureContract(
    features=(
        Feature("user", "categorical_string", "user", vocabulary=tuple(f"u{k}" for k in range(30))),
        Feature("item", "categorical_int", "item", vocabulary=tuple(range(50))),
        Feature("price", "numeric", "item", mean=20.0, std=10.0),
        Feature("age", "numeric", "user", mean=35.0, std=10.0),
        Feature("device", "categorical_string", "context", vocabulary=("ios", "android", "web")),
        Feature("tags", "multi_categorical", "item", vocabulary=("a", "b", "c"), max_len=3),
    )
)


def rows(n: int, seed: int) -> pd.DataFrame:
    """Rows of one world: 20% of devices unknown (sent as the contract's default "")."""
    rng = np.random.default_rng(seed)
    device = rng.choice(["ios", "android", "web"], n).astype(object)
    device[rng.random(n) < 0.2] = ""
    price = rng.uniform(5, 40, n).astype(np.float32)
    logit = (price - 20) / 10 + (device == "ios")
    return pd.DataFrame(
        {
            "user": rng.choice([f"u{k}" for k in range(30)], n).astype(object),
            "item": rng.integers(0, 50, n).astype(np.int64),
            "price": price,
            "age": rng.normal(35, 10, n).astype(np.float32),
            "device": device,
            "tags": rng.choice(["a", "a|b", "c", ""], n).astype(object),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
        }
    )


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory) -> Path:
    """A logistic regression trained one epoch on the training rows, exported as version 1."""
    import keras

    from export.batches import frame_inputs
    from export.saved_model import export_saved_model
    from training.models import ModelConfig, build_model

    frame = rows(2000, seed=0)
    model = build_model("lr", CONTRACT, config=ModelConfig(), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    model.fit(frame_inputs(frame, CONTRACT), frame["label"].to_numpy(np.float32), epochs=1, verbose=0)
    return export_saved_model(model, CONTRACT, tmp_path_factory.mktemp("models"), "ctr")


def serve(
    frame: pd.DataFrame, path: Path, version_dir: Path, *, tamper: float = 0.0, arm: str | None = None
) -> None:
    """Served lists of 10 rows scored by the exported model as TF Serving would (one batch a list)."""
    from export.batches import frame_inputs
    from export.scoring import load_saved_model, score_saved_model

    loaded = load_saved_model(version_dir)
    log = ServedLog(path).start()
    inputs = frame_inputs(frame, CONTRACT)
    for start in range(0, len(frame), 10):
        part = {name: values[start : start + 10] for name, values in inputs.items()}
        scores = score_saved_model(None, CONTRACT, part, loaded=loaded) + (tamper if start == 50 else 0.0)
        items = [str(i) for i in part["item"]]
        write_list(
            log, f"{arm}-r{start}", items, scores=scores.tolist(), inputs=part, model_version=1, arm=arm
        )
    log.close()


def test_psi_and_bins_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.173287 + 0.101366
    assert psi([50, 50], [25, 75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0, abs=1e-12)
    device = CONTRACT["device"]
    binning = fit_binning(device, ["ios", "ios", "web", ""], top_k=2)
    assert binning.labels == ("ios", "web", "(other in vocabulary)", "(OOV)")
    assert binning.counts(["ios", "android", "", "tv", "tv"]).tolist() == [
        1,
        0,
        1,
        3,
    ]  # "" is OOV to the graph
    assert oov_rate(device, ["ios", "", "tv", "tv"]) == 0.5  # the default "" is not OOV
    price = fit_binning(CONTRACT["price"], [1.0, 2.0, 3.0, 4.0], numeric_bins=2)
    assert price.edges == (2.5,) and price.counts([0.0, 2.5, 9.0, None, math.nan]).tolist() == [1, 2, 2]
    tags = fit_binning(CONTRACT["tags"], ["a|b", "", "a"], top_k=5)
    assert tags.counts(["a|z", ""]).tolist()[:3] == [1, 0, 1] and tags.counts(["a|z"])[-1] == 1


def test_sequences_are_binned_by_item() -> None:
    items = tuple(f"i{k}" for k in range(5))
    item = Feature("item_id", "categorical_string", "item", vocabulary=items)
    history = Feature("history", "sequence", "user", vocabulary=items, max_len=4, item_feature="item_id")
    train = ["i1|i2", "i2|i3|i1", "", "i2"]  # tokens: i2 x3, i1 x2, i3 x1, one empty history
    binning = fit_binning(history, train, top_k=2)
    assert binning.labels == ("i2", "i1", "(other in vocabulary)", "(OOV)")
    # online tokens: i1, i2 (top bins), i4 (in vocabulary, beyond the top 2), x9 twice (unknown)
    assert binning.counts(["i1|i4|x9", "x9|i2"]).tolist() == [1, 1, 1, 2]
    assert oov_rate(history, ["i1|x9", "x9|x8|i2"]) == pytest.approx(3 / 5)
    assert oov_rate(item, ["i1|x9"]) == 1.0  # a single-valued feature is one value per row


def test_planted_shift_is_flagged_exactly(tmp_path: Path, version_dir: Path) -> None:
    train = tmp_path / "train.parquet"
    rows(5000, seed=1).to_parquet(train)
    online = rows(1500, seed=2)
    online["price"] = online["price"] * np.float32(100)  # cents online, euros in training
    online.loc[online["device"] == "", "device"] = "unknown"  # the ranker's default is not the contract's
    served, out = tmp_path / "served.jsonl", tmp_path / "report"
    serve(online, served, version_dir)
    code = main(
        [
            "--served",
            str(served),
            "--training-table",
            str(train),
            "--model",
            str(version_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 1
    data = json.loads((out / "summary.json").read_text())
    assert data["flagged"] == ["price", "device"]
    features = {f["name"]: f for f in data["features"]}
    assert features["price"]["psi"] > 5 and all(
        features[n]["psi"] < 0.05 for n in ("user", "item", "age", "tags")
    )
    device = features["device"]
    assert device["default_online"] == 0.0 and device["default_offline"] == pytest.approx(0.2, abs=0.02)
    assert device["oov_online"] == pytest.approx(online["device"].eq("unknown").mean())
    assert data["replay"]["rows"] == 1500 and data["replay"]["max_abs_diff"] < 1e-6
    assert data["replay_flagged"] is False
    report = (out / "report.md").read_text()
    assert "Flagged: price, device." in report and "reproduced" in report
    for png in ("psi.png", "feature_price.png", "feature_device.png", "replay.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_honest_log_is_clean_and_tampered_scores_are_flagged(tmp_path: Path, version_dir: Path) -> None:
    train = tmp_path / "train.parquet"
    rows(5000, seed=1).to_parquet(train)
    honest, tampered = tmp_path / "honest.jsonl", tmp_path / "tampered.jsonl"
    serve(rows(600, seed=3), honest, version_dir)
    serve(rows(600, seed=3), tampered, version_dir, tamper=0.25)
    base = ["--training-table", str(train), "--model", str(version_dir)]
    assert main(["--served", str(honest), "--out", str(tmp_path / "a"), *base]) == 0
    clean = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert clean["flagged"] == [] and clean["replay"]["max_abs_diff"] < 1e-6
    assert main(["--served", str(tampered), "--out", str(tmp_path / "b"), *base]) == 1
    bad = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert bad["flagged"] == [] and bad["replay_flagged"] is True
    assert bad["replay"]["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)  # one list's scores moved by 0.25
    assert "FLAGGED" in (tmp_path / "b" / "report.md").read_text()


def test_arm_selects_the_lists_its_model_scored(tmp_path: Path, version_dir: Path) -> None:
    train, served = tmp_path / "train.parquet", tmp_path / "served.jsonl"
    rows(5000, seed=1).to_parquet(train)
    shifted = rows(600, seed=4)
    shifted["price"] *= np.float32(100)
    serve(rows(600, seed=3), served, version_dir, arm="stable")
    serve(shifted, served, version_dir, arm="canary")
    base = [
        "--served",
        str(served),
        "--training-table",
        str(train),
        "--contract",
        str(version_dir / "assets.extra"),
    ]
    assert main([*base, "--out", str(tmp_path / "s"), "--arm", "stable"]) == 0
    assert main([*base, "--out", str(tmp_path / "c"), "--arm", "canary"]) == 1
    canary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert canary["flagged"] == ["price"] and canary["replay"] is None
    assert "Not run (no --model)." in (tmp_path / "c" / "report.md").read_text()


def test_errors_and_help(tmp_path: Path, capsys) -> None:
    args = ["--served", str(tmp_path / "none.jsonl"), "--training-table", str(tmp_path / "t.parquet")]
    assert main([*args, "--out", str(tmp_path / "o"), "--contract", str(tmp_path / "c.json")]) == 2
    assert "c.json" in capsys.readouterr().err
    CONTRACT.save(tmp_path)
    assert main([*args, "--out", str(tmp_path / "o"), "--contract", str(tmp_path)]) == 2
    assert f"no log at {tmp_path / 'none.jsonl'}" in capsys.readouterr().err
    done = subprocess.run(
        [sys.executable, "-m", "analysis.skew_cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--psi-threshold" in done.stdout and "--replay-tolerance" in done.stdout


def test_training_run_split_is_the_baseline(tmp_path: Path) -> None:
    """--training-run loads the run's data as training did; its own train rows online, price x100."""
    from export.batches import frame_inputs
    from training.data import load_source

    options = {"num_rows": 3000, "seed": 0}
    splits = load_source("synthetic", None, **options)
    run = tmp_path / "run"
    run.mkdir()
    splits.contract.save(run)
    (run / "config.json").write_text(json.dumps({"data": "synthetic", "data_options": options}))
    inputs = frame_inputs(splits.train, splits.contract)
    inputs["price"] = inputs["price"] * np.float32(100)
    log = ServedLog(tmp_path / "served.jsonl").start()
    for start in range(0, len(splits.train), 10):
        part = {name: values[start : start + 10] for name, values in inputs.items()}
        write_list(log, f"r{start}", [str(i) for i in part["item_id"]], inputs=part)
    log.close()
    out = tmp_path / "out"
    assert (
        main(["--served", str(tmp_path / "served.jsonl"), "--training-run", str(run), "--out", str(out)]) == 1
    )
    data = json.loads((out / "summary.json").read_text())
    assert data["flagged"] == ["price"]
    assert all(f["psi"] == pytest.approx(0.0, abs=1e-12) for f in data["features"] if f["name"] != "price")
    assert f"{len(splits.train)} training rows" in (out / "report.md").read_text()

"""recsys-build-recall --data SPEC: artefacts from the same files, typing and split as training (issue 17 item 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender_client.features import FeatureJoiner, InMemoryFeatureStore
from recommender_client.recall.artifacts import load_artifacts
from recommender_client.recall.build import main
from recommender_client.recall.from_spec import build_from_spec
from training.data.user_logs import load_dataset_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dataset_spec"


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    for name in ("spec.yaml", "events.csv"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path / "spec.yaml"


def training_rows(spec: Path) -> pd.DataFrame:
    """The rows training learns from, by training's own loader (cold-start copies, with a blank id, left out)."""
    train = load_dataset_spec(spec).train
    return train[(train["customer"] != "") & (train["product"] != "")]


def test_artefacts_hold_the_training_rows_only(spec: Path, tmp_path: Path) -> None:
    splits = load_dataset_spec(spec)
    rows = training_rows(spec)
    artifacts = build_from_spec(spec, splits.contract, tmp_path / "recall")
    assert sorted(artifacts.user_ids) == sorted(set(rows["customer"]))
    assert len(rows) < 240  # the held-out events are not in the history
    per_user = rows.groupby("customer").size()
    for k, user in enumerate(artifacts.user_ids):
        lo, hi = artifacts.history_offsets[k], artifacts.history_offsets[k + 1]
        assert hi - lo == per_user[user], user
    # item features are each item's newest training event, read back through the ranker's join
    raw = pd.read_csv(spec.parent / "events.csv")
    raw["timestamp"] = (pd.to_datetime(raw["event_time"]) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    keys = rows[["customer", "product", "timestamp"]].astype({"timestamp": float}).drop_duplicates()
    raw = raw.merge(keys, on=["customer", "product", "timestamp"])  # the training events, from the CSV
    assert len(raw) == len(rows)
    newest = raw.sort_values("timestamp", kind="stable").groupby("product").tail(1).set_index("product")
    loaded = load_artifacts(tmp_path / "recall")
    join = FeatureJoiner(splits.contract, InMemoryFeatureStore.from_artifacts(loaded))
    items = sorted(newest.index)[:5]
    inputs, _, known = join.join("c01", items, {"device": "ios"})
    assert known.all()
    np.testing.assert_allclose(inputs["price"], newest.loc[items, "price"].to_numpy(np.float32), rtol=1e-6)
    assert inputs["category"].tolist() == newest.loc[items, "category"].tolist()
    assert inputs["tags"].tolist() == [t.replace("/", "|") for t in newest.loc[items, "tags"]]


def test_cli_builds_from_a_spec_and_refuses_two_sources(spec: Path, tmp_path: Path, capsys) -> None:
    contract_dir = tmp_path / "contract"
    load_dataset_spec(spec).contract.save(contract_dir)
    out = tmp_path / "recall"
    assert main(["--data", str(spec), "--contract", str(contract_dir), "--out", str(out)]) == 0
    assert (out / "manifest.json").is_file()
    every = tmp_path / "all"
    assert (
        main(
            ["--data", str(spec), "--spec-rows", "all", "--contract", str(contract_dir), "--out", str(every)]
        )
        == 0
    )
    assert len(load_artifacts(every).history_items) == 240 > len(load_artifacts(out).history_items)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--data",
                str(spec),
                "--data-dir",
                str(tmp_path),
                "--contract",
                str(contract_dir),
                "--out",
                str(out),
            ]
        )
    assert exc.value.code == 2
    spec.write_text(
        spec.read_text().replace("timestamp: event_time", "").replace("kind: per-user", "kind: random")
    )
    assert main(["--data", str(spec), "--contract", str(contract_dir), "--out", str(tmp_path / "x")]) == 2
    assert "names no timestamp column" in capsys.readouterr().err

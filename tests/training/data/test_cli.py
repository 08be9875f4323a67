"""recsys-generate: help text, generated files, summary numbers, bad input exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from training.data.cli import main
from training.data.synthetic import load_synthetic, oracle_auc, read_config


def test_help_documents_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--rows", "--seed", "--out", "--criteo-tsv", "--chunk-rows"):
        assert option in text


def test_generates_data_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    tsv = tmp_path / "criteo.tsv"
    argv = ["--rows", "4000", "--seed", "9", "--out", str(out), "--users", "100", "--items", "60",
            "--categories", "6", "--chunk-rows", "1500", "--criteo-tsv", str(tsv), "--criteo-rows", "300"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    config = read_config(out)
    assert (config.num_rows, config.seed, config.num_users, config.num_items) == (4000, 9, 100, 60)
    assert summary["rows"] == 4000 and summary["events_bytes"] == (out / "events.parquet").stat().st_size
    splits = load_synthetic(out)
    assert summary["oracle_auc"]["test"] == pytest.approx(oracle_auc(splits.test), abs=1e-5)
    assert len(pd.read_parquet(out / "items.parquet")) == 60
    assert len(tsv.read_text().splitlines()) == 300 and summary["criteo_tsv"]["rows"] == 300


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rows", "0", "--out", str(tmp_path / "x")]) == 2
    assert "num_rows" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--rows", "10"])  # --out is required
    assert info.value.code == 2

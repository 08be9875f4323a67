"""recsys-train --model din --history-len N: the sequence model from the command line (issue 17 item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main
from training.features import FeatureContract


def test_din_needs_a_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", "synthetic", "--rows", "2000", "--model", "din", "--out", str(tmp_path / "r")]) == 2
    assert "give --history-len N" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_din_trains_with_a_history_feature(tmp_path: Path) -> None:
    args = ["--data", "synthetic", "--rows", "3000", "--model", "din", "--history-len", "4"]
    assert main([*args, "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]) == 0
    history = FeatureContract.load(tmp_path / "r")["history"]
    assert history.kind.value == "sequence" and history.max_len == 4

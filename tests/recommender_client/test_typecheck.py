"""The client and the ranking service type-check with mypy (the style guide asks for it there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_mypy_passes_on_recommender_client() -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "recommender_client"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout

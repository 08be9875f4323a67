"""A crash mid-export never leaves a version directory: kill the exporting process and look."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from export.layout import TEMP_PREFIX, list_versions
from export.saved_model import export_saved_model

from .conftest import entries

REPO = Path(__file__).resolve().parents[2]

_EXPORTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.export.conftest import tiny_contract
    from training.models import build_model
    from export.saved_model import export_saved_model

    base, marker = Path(sys.argv[1]), Path(sys.argv[2])
    contract = tiny_contract()

    def pause(stage, export_dir):
        if stage == "saved_model":  # saved_model.pb and variables are on disk, assets are not
            marker.write_text(str(export_dir))
            time.sleep(600)

    export_saved_model(build_model("lr", contract, seed=0), contract, base, "ctr", on_stage=pause)
    """
)


def test_killed_export_leaves_no_version_and_next_export_cleans_up(tmp_path, contract, trained_model):
    script = tmp_path / "exporter.py"
    script.write_text(_EXPORTER)
    marker = tmp_path / "paused"
    base = tmp_path / "models"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(base), str(marker)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(
                    f"exporter exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("exporter never reached the pause point")
            time.sleep(0.2)
        staging = Path(marker.read_text())
        assert (staging / "saved_model.pb").is_file()  # killed while the version was half written
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()

    model_dir = base / "ctr"
    assert list_versions(model_dir) == []
    leftovers = entries(model_dir)
    assert leftovers == [staging.name] and staging.name.startswith(f"{TEMP_PREFIX}1-")
    assert not any(name.isdigit() for name in leftovers)

    published = export_saved_model(trained_model, contract, base, "ctr")
    assert published == model_dir / "1"
    assert entries(model_dir) == ["1"]  # the stale staging dir is gone


def test_failure_while_writing_assets_leaves_nothing(tmp_path, contract, trained_model):
    def fail(stage, export_dir):
        if stage == "assets":
            raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="disk full"):
        export_saved_model(trained_model, contract, tmp_path, "ctr", on_stage=fail)
    assert entries(tmp_path / "ctr") == []

"""verify_export: every check passes on a good export and each one catches what it is for."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export.batches import frame_inputs
from export.errors import ExportError, VerificationError
from export.scoring import score_keras
from export.signatures import SAVED_MODEL_PB, describe_signatures, read_saved_model_proto, set_method_names
from export.verify import verify_export

from .conftest import tiny_frame, train_tiny

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def test_good_export_passes_every_check(exported, trained_model, contract, eval_frame):
    report = verify_export(exported, keras_model=trained_model, frame=eval_frame)
    assert report.passed, report.summary()
    # The kept scores (publish computes its AUC from them) are the model's, row for row.
    expected = score_keras(trained_model, frame_inputs(eval_frame, contract), contract)
    assert report.ctr is not None and report.ctr.shape == (len(eval_frame),)
    np.testing.assert_allclose(report.ctr, expected, atol=1e-6)
    assert "ctr" not in report.to_dict()
    assert report.rows_compared == 10_000
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-6
    assert [c.name for c in report.checks] == [
        "signature_matches_contract",
        "method_names",
        "warmup_replays",
        "no_nan",
        "keras_parity",
        "batch_sizes",
        "unseen_categories",
        "examples_signatures",
        "rank_guard",
        "session_bundle",
    ]
    details = {c.name: c.detail for c in report.checks}
    assert "3 records replayed (batch sizes [1, 8, 64])" in details["warmup_replays"]
    assert "['user', 'tags']" in details["unseen_categories"]  # the single-OOV vocabulary features
    report.raise_if_failed()


def test_other_weights_fail_parity(exported, contract, eval_frame):
    other = train_tiny(contract, tiny_frame(500, seed=5), seed=3)
    report = verify_export(exported, keras_model=other, frame=eval_frame)
    assert not report.passed
    assert [c.name for c in report.failures] == ["keras_parity"]
    assert report.max_abs_diff > 1e-3
    with pytest.raises(
        VerificationError, match=r"keras_parity: AssertionError: max abs diff .* > 1e-06 over 10000 rows"
    ):
        report.raise_if_failed()


def test_too_few_rows_fail_parity(exported, trained_model, eval_frame):
    report = verify_export(exported, keras_model=trained_model, frame=eval_frame.head(500))
    assert [c.name for c in report.failures] == ["keras_parity"]
    assert "only 500 held-out rows, parity needs >= 10000" in report.failures[0].detail


def test_predict_method_names_fail_verification(exported, tmp_path):
    copy = tmp_path / "1"
    shutil.copytree(exported, copy)
    set_method_names(copy, {"classification": "tensorflow/serving/predict"})
    report = verify_export(copy)
    assert [c.name for c in report.failures] == ["method_names"]
    assert report.ctr is None  # no frame, nothing scored
    assert "'classification': 'tensorflow/serving/predict'" in report.failures[0].detail


def test_corrupt_warmup_fails_verification(exported, tmp_path):
    copy = tmp_path / "1"
    shutil.copytree(exported, copy)
    (copy / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a tfrecord")
    report = verify_export(copy)
    assert [c.name for c in report.failures] == ["warmup_replays"]


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="model directory .*absent.* does not exist"):
        verify_export(tmp_path / "absent")
    (tmp_path / "empty" / "assets.extra").mkdir(parents=True)
    with pytest.raises(Exception, match="feature contract"):
        verify_export(tmp_path / "empty")


def test_signature_text_matches_saved_model_cli(exported):
    """Same text as the real `saved_model_cli show --all`, up to its Concrete Functions listing."""
    cli = VENV_BIN / "saved_model_cli"
    if not cli.exists():
        pytest.skip("saved_model_cli not installed in .venv")
    done = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(exported)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reference = done.stdout.split("\nConcrete Functions:")[0]
    # the tool also lists the graph's ops (an unordered set): not part of the signatures
    reference = "\n".join(
        line for line in reference.split("\n") if not line.startswith("The MetaGraph with tag set")
    )
    ours = describe_signatures(exported)
    assert ours.rstrip("\n") == reference.rstrip("\n")
    assert (
        "signature_def['serving_default']:" in ours and "Method name is: tensorflow/serving/classify" in ours
    )


def test_read_saved_model_proto_rejects_garbage(tmp_path):
    (tmp_path / SAVED_MODEL_PB).write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ExportError, match="is not a SavedModel proto"):
        read_saved_model_proto(tmp_path)

"""The blessing gate: verification plus an AUC comparison against the latest published version."""

from __future__ import annotations

import json
import shutil

import pytest
from sklearn.metrics import roc_auc_score

from export.batches import frame_inputs
from export.errors import ExportError
from export.layout import list_versions
from export.publish import decide, publish_model
from export.scoring import score_keras

from .conftest import tiny_frame, train_tiny


@pytest.mark.parametrize(
    "candidate, baseline, verified, tolerance, force, blessed, reason",
    [
        (0.70, None, True, 0.0, False, True, "no published version yet: first version"),
        (0.70, 0.70, True, 0.0, False, True, "candidate AUC 0.700000 >= latest 0.700000 - tolerance 0"),
        (0.69, 0.70, True, 0.02, False, True, "candidate AUC 0.690000 >= latest 0.700000 - tolerance 0.02"),
        (0.60, 0.70, True, 0.02, False, False, "candidate AUC 0.600000 < latest 0.700000 - tolerance 0.02"),
        (0.60, 0.70, True, 0.0, True, True, "forced: candidate AUC 0.600000 < latest 0.700000 - tolerance 0"),
        (0.90, 0.70, False, 0.0, True, False, "verification failed"),
    ],
)
def test_decide(candidate, baseline, verified, tolerance, force, blessed, reason):
    assert decide(candidate, baseline, verified=verified, tolerance=tolerance, force=force) == (
        blessed,
        reason,
    )


def test_unscorable_baseline_blocks_unless_forced():
    assert decide(0.7, None, verified=True, tolerance=0, force=False, baseline_error="boom") == (
        False,
        "the latest version could not be scored: boom",
    )
    assert decide(0.7, None, verified=True, tolerance=0, force=True, baseline_error="boom")[0] is True


@pytest.fixture(scope="module")
def bad_model(contract):
    """Trained on flipped labels: its AUC is clearly below the good model's."""
    return train_tiny(contract, tiny_frame(3000, seed=0), flip=True)


@pytest.fixture(scope="module")
def published(tmp_path_factory, trained_model, contract, eval_frame):
    base = tmp_path_factory.mktemp("published")
    result = publish_model(trained_model, contract, base, "ctr", eval_frame=eval_frame)
    return base, result


@pytest.fixture
def base_with_v1(tmp_path, published):
    base, _ = published
    shutil.copytree(base, tmp_path / "base")
    return tmp_path / "base"


def _keras_auc(model, contract, frame):
    scores = score_keras(model, frame_inputs(frame, contract), contract)
    return roc_auc_score(frame["label"].to_numpy(), scores)


def test_first_version_is_blessed_with_its_record(published, trained_model, contract, eval_frame):
    base, result = published
    assert result.blessed and result.version == 1 and result.path == base / "ctr" / "1"
    assert result.record_path == base / "ctr" / "1.blessing.json"
    record = json.loads(result.record_path.read_text())
    assert record == json.loads((result.path / "assets.extra" / "blessing.json").read_text())
    assert record["decision"] == "blessed" and record["baseline"] is None and not record["forced"]
    assert record["candidate"]["verification"]["passed"] is True
    assert record["candidate"]["auc"] == pytest.approx(
        _keras_auc(trained_model, contract, eval_frame), abs=1e-6
    )
    assert record["candidate"]["auc"] > 0.6
    assert list_versions(base / "ctr") == [1]


def test_worse_candidate_is_rejected_and_leaves_no_version(
    base_with_v1, bad_model, trained_model, contract, eval_frame
):
    result = publish_model(bad_model, contract, base_with_v1, "ctr", eval_frame=eval_frame, tolerance=0.01)
    model_dir = base_with_v1 / "ctr"
    assert not result.blessed and result.path is None and result.version == 2
    assert list_versions(model_dir) == [1]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".tmp-")]
    assert result.record_path.parent == model_dir and result.record_path.name.startswith("2.rejected-")
    record = json.loads(result.record_path.read_text())
    assert record["decision"] == "rejected" and record["tolerance"] == 0.01
    bad_auc = _keras_auc(bad_model, contract, eval_frame)
    good_auc = _keras_auc(trained_model, contract, eval_frame)
    assert record["candidate"]["auc"] == pytest.approx(bad_auc, abs=1e-6)
    assert (
        record["baseline"]["auc"] == pytest.approx(good_auc, abs=1e-6) and record["baseline"]["version"] == 1
    )
    assert record["reason"].startswith(f"candidate AUC {bad_auc:.6f} < latest {good_auc:.6f}")


def test_force_publishes_a_worse_candidate_with_the_reason(base_with_v1, bad_model, contract, eval_frame):
    forced = publish_model(
        bad_model,
        contract,
        base_with_v1,
        "ctr",
        eval_frame=eval_frame,
        force=True,
        force_reason="rollback drill",
    )
    assert forced.blessed and forced.path == base_with_v1 / "ctr" / "2"
    record = json.loads(forced.record_path.read_text())
    assert record["forced"] is True and record["force_reason"] == "rollback drill"
    assert record["reason"].startswith("forced: candidate AUC")
    assert record["candidate"]["auc"] < record["baseline"]["auc"]
    assert list_versions(base_with_v1 / "ctr") == [1, 2]


def test_tolerance_lets_a_small_enough_drop_through(base_with_v1, bad_model, contract, eval_frame):
    result = publish_model(bad_model, contract, base_with_v1, "ctr", eval_frame=eval_frame, tolerance=1.0)
    assert result.blessed and result.version == 2 and not result.record["forced"]
    drop = result.record["baseline"]["auc"] - result.record["candidate"]["auc"]
    assert 0 < drop <= 1.0 and result.record["reason"].endswith("- tolerance 1")


def test_failed_verification_is_never_published(tmp_path, trained_model, contract, eval_frame):
    result = publish_model(
        trained_model,
        contract,
        tmp_path,
        "ctr",
        eval_frame=eval_frame.head(2000),
        force=True,
        force_reason="try",
    )
    assert not result.blessed and list_versions(tmp_path / "ctr") == []
    assert result.record["reason"].startswith("verification failed: keras_parity")
    assert "only 2000 held-out rows" in result.record["reason"]


def test_force_needs_a_reason_and_tolerance_must_be_sane(tmp_path, trained_model, contract, eval_frame):
    with pytest.raises(ExportError, match="--force needs a reason"):
        publish_model(trained_model, contract, tmp_path, "ctr", eval_frame=eval_frame, force=True)
    with pytest.raises(ExportError, match="tolerance must be a finite number >= 0"):
        publish_model(trained_model, contract, tmp_path, "ctr", eval_frame=eval_frame, tolerance=-0.1)
    assert not (tmp_path / "ctr").exists()

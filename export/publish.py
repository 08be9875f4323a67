"""The blessing gate: publish a candidate only if it verifies and does not lose AUC against the latest.

Both models are scored as SavedModels on the same evaluation rows, so the comparison measures
what the server would serve. The decision, both models' metrics and the reason go into a JSON
record beside the versions (``<version>.blessing.json`` when published,
``<version>.rejected-<time>.json`` otherwise; neither name parses as a version) and, for a
published version, into its ``assets.extra/blessing.json`` too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from export.batches import frame_inputs
from export.errors import ExportError
from export.layout import latest_version, write_text_atomic
from export.model_card import card_json
from export.saved_model import ASSETS_EXTRA, read_assets, staged_saved_model
from export.scoring import score_saved_model
from export.verify import MIN_PARITY_ROWS, verify_export
from training.features import FeatureContract

BLESSING_FILENAME = "blessing.json"


@dataclass(frozen=True)
class PublishResult:
    """What the gate decided; ``path`` is the published version directory or None if rejected."""

    blessed: bool
    version: int
    path: Path | None
    record_path: Path
    record: dict[str, Any]


def evaluate_auc(
    version_dir: Path,
    frame: Any,
    label: str,
    *,
    contract: FeatureContract | None = None,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """AUC, logloss and row count of an exported version on ``frame``, scored with its own contract.

    ``scores`` are the version's ``ctr`` on ``frame`` when already known (the verification
    computed them), which spares reloading and rescoring the SavedModel.
    """
    from training.metrics import auc, logloss

    if scores is None:
        if contract is None:
            contract, _ = read_assets(version_dir)
        inputs = frame_inputs(frame, contract, source="evaluation frame")
        scores = score_saved_model(version_dir, contract, inputs)
    labels = np.asarray(frame[label]).astype(np.int64)
    return {
        "auc": float(auc(labels, scores)),
        "logloss": float(logloss(labels, scores)),
        "rows": int(len(labels)),
        "mean_ctr": float(scores.mean()),
        "label_rate": float(labels.mean()),
    }


def decide(
    candidate_auc: float,
    baseline_auc: float | None,
    *,
    verified: bool,
    tolerance: float,
    force: bool,
    baseline_error: str | None = None,
) -> tuple[bool, str]:
    """The gate's rule as a pure function: (blessed, reason).

    Verification failures are never overridden (a model that fails them would break the
    server); ``force`` overrides only the AUC comparison, and the reason says so.
    """
    if not verified:
        return False, "verification failed"
    if baseline_error is not None:
        ok, why = False, f"the latest version could not be scored: {baseline_error}"
    elif baseline_auc is None:
        ok, why = True, "no published version yet: first version"
    elif candidate_auc >= baseline_auc - tolerance:
        ok, why = (
            True,
            (f"candidate AUC {candidate_auc:.6f} >= latest {baseline_auc:.6f} - tolerance {tolerance:g}"),
        )
    else:
        ok, why = (
            False,
            (f"candidate AUC {candidate_auc:.6f} < latest {baseline_auc:.6f} - tolerance {tolerance:g}"),
        )
    if not ok and force:
        return True, f"forced: {why}"
    return ok, why


def publish_model(
    model: Any,
    contract: FeatureContract,
    base_path: str | Path,
    model_name: str,
    *,
    eval_frame: Any,
    version: int | str | None = None,
    tolerance: float = 0.0,
    force: bool = False,
    force_reason: str = "",
    warmup_frame: Any = None,
    model_card: Mapping[str, Any] | None = None,
    min_rows: int = MIN_PARITY_ROWS,
) -> PublishResult:
    """Export into a staging directory, verify, compare AUC with the latest version, then publish.

    Args:
        model: the candidate Keras model.
        contract: its feature contract.
        base_path: parent of ``<model_name>/<version>``.
        model_name: the served model name.
        eval_frame: the evaluation split (contract columns and the label), used for
            verification (parity over >= ``min_rows`` rows) and for both AUCs.
        version: explicit version, or None for latest + 1.
        tolerance: largest accepted AUC drop against the latest version.
        force: publish even if the AUC gate says no (verification must still pass).
        force_reason: why, recorded in the blessing record.
        warmup_frame: rows for the warmup records (defaults to ``eval_frame``).
        model_card: extra facts for the model card.
        min_rows: rows needed for the parity check.

    Raises:
        ExportError: bad inputs, unwritable paths, existing version (nothing is published).
    """
    if tolerance < 0 or not np.isfinite(tolerance):
        raise ExportError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if force and not force_reason.strip():
        raise ExportError("--force needs a reason (it is recorded in the blessing record)")
    with staged_saved_model(
        model,
        contract,
        base_path,
        model_name,
        version,
        warmup_frame=warmup_frame if warmup_frame is not None else eval_frame,
        model_card=model_card,
    ) as staged:
        report = verify_export(staged.path, keras_model=model, frame=eval_frame, min_rows=min_rows)
        candidate = evaluate_auc(
            staged.path, eval_frame, contract.label, contract=contract, scores=report.ctr
        )
        candidate.update(version=staged.version, verification=report.to_dict())
        baseline, baseline_error = None, None
        previous = latest_version(staged.model_dir)
        if previous is not None:
            try:
                baseline = evaluate_auc(staged.model_dir / str(previous), eval_frame, contract.label)
                baseline["version"] = previous
            except Exception as exc:  # any failure to score the baseline blocks an unforced publish
                baseline_error = f"{type(exc).__name__}: {exc}"
        blessed, reason = decide(
            candidate["auc"],
            None if baseline is None else baseline["auc"],
            verified=report.passed,
            tolerance=tolerance,
            force=force,
            baseline_error=baseline_error,
        )
        if not report.passed:
            reason += ": " + "; ".join(f"{c.name}: {c.detail}" for c in report.failures)
        record = {
            "model_name": model_name,
            "decision": "blessed" if blessed else "rejected",
            "reason": reason,
            "forced": bool(force and blessed and reason.startswith("forced")),
            "force_requested": force,
            "force_reason": force_reason or None,
            "tolerance": tolerance,
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "candidate": candidate,
            "baseline": baseline,
            "baseline_error": baseline_error,
        }
        text = card_json(record)
        if not blessed:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            record_path = staged.model_dir / f"{staged.version}.rejected-{stamp}.json"
            write_text_atomic(record_path, text)
            return PublishResult(False, staged.version, None, record_path, record)
        (staged.path / ASSETS_EXTRA / BLESSING_FILENAME).write_text(text, encoding="utf-8")
        path = staged.publish()
        record_path = staged.model_dir / f"{staged.version}.blessing.json"
        write_text_atomic(record_path, text)
        return PublishResult(True, staged.version, path, record_path, record)


def read_record(path: Path) -> dict[str, Any]:
    """Load a blessing record (for reports and tests)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))

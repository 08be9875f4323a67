"""The A/B's offline half: data, the canary's skewed training table, two models, their offline AUC, exports.

Every step runs the command a user would type (``demo.run.run``), and a step whose output exists
is skipped, so a re-run after a failure resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from demo.ab.config import PLANTED_FEATURE, ABConfig
from demo.run import module, run, step

ARMS = ("stable", "canary")
VERSIONS = {"stable": 1, "canary": 2}


@dataclass(frozen=True)
class OfflinePaths:
    """Where the offline half put things."""

    data: Path  # the world's events in dollars: stable's training data and the ranker's stores
    canary_data: Path  # the same events with the planted unit error in PLANTED_FEATURE
    runs: dict[str, Path]
    evaluation: dict[str, Path]
    base: Path  # <base>/<model_name>/{1,2}
    recall: Path


def paths_for(cfg: ABConfig) -> OfflinePaths:
    return OfflinePaths(
        data=cfg.out / "data",
        canary_data=cfg.out / "data-canary",
        runs={arm: cfg.out / "runs" / arm for arm in ARMS},
        evaluation={arm: cfg.out / "evaluation" / arm for arm in ARMS},
        base=cfg.out / "serving",
        recall=cfg.out / "recall",
    )


def write_canary_table(source: Path, target: Path, scale: float) -> None:
    """Copy the synthetic folder with ``PLANTED_FEATURE`` multiplied by ``scale`` (events and items).

    This is the canary team's feature pipeline with its unit error; the folder appears whole
    (written beside it, then renamed) or not at all.
    """
    if target.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for entry in source.iterdir():
            if entry.suffix == ".parquet":
                frame = pd.read_parquet(entry)
                if PLANTED_FEATURE in frame.columns:
                    frame[PLANTED_FEATURE] = (frame[PLANTED_FEATURE] * scale).astype("float32")
                frame.to_parquet(tmp / entry.name, index=False)
            else:
                shutil.copy2(entry, tmp / entry.name)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def offline_auc(evaluation_dir: Path) -> float:
    """The test-split AUC ``recsys-evaluate`` wrote for its one model."""
    data = json.loads((evaluation_dir / "evaluation.json").read_text(encoding="utf-8"))
    (model,) = data["summary"]["models"].values()
    return float(model["metrics"]["auc"]["mean"])


def train_and_export(cfg: ABConfig) -> tuple[OfflinePaths, dict[str, float]]:
    """Run the offline half; returns the paths and each arm's offline test AUC (on its own data)."""
    p = paths_for(cfg)
    step(
        f"1. synthetic data (the world), and the canary's training table: {PLANTED_FEATURE} x {cfg.canary_price_scale:g}"
    )
    if not (p.data / "events.parquet").exists():
        run(
            module(
                "training.data.cli", "--rows", str(cfg.rows), "--seed", str(cfg.seed), "--out", str(p.data)
            )
        )
    p.canary_data.parent.mkdir(parents=True, exist_ok=True)
    write_canary_table(p.data, p.canary_data, cfg.canary_price_scale)
    data_of = {"stable": p.data, "canary": p.canary_data}
    epochs = {"stable": cfg.stable_epochs, "canary": cfg.canary_epochs}
    step(
        f"2. train DeepFM: stable {cfg.stable_epochs} epochs, canary {cfg.canary_epochs} epochs on its table"
    )
    for arm in ARMS:
        run(
            module(
                "training.cli",
                *("--data", "synthetic", "--data-path", str(data_of[arm]), "--model", "deepfm"),
                *("--epochs", str(epochs[arm]), "--patience", str(epochs[arm])),
                *("--seed", str(cfg.seed), "--out", str(p.runs[arm]), "--quiet"),
            )
        )
    step("3. offline evaluation of each arm on its own test split")
    auc = {}
    for arm in ARMS:
        if not (p.evaluation[arm] / "evaluation.json").exists():
            run(
                module(
                    "training.evaluate",
                    *("--model", f"{arm}={p.runs[arm]}", "--split", "test", "--out", str(p.evaluation[arm])),
                )
            )
        auc[arm] = offline_auc(p.evaluation[arm])
        print(f"  {arm}: test AUC {auc[arm]:.4f}", flush=True)
    step(f"4. export both as versions of {cfg.model_name!r} (stable 1, canary 2) and verify")
    for arm in ARMS:
        version_dir = p.base / cfg.model_name / str(VERSIONS[arm])
        if not version_dir.exists():
            run(
                module(
                    "export.cli",
                    "export",
                    *("--model-dir", str(p.runs[arm]), "--base", str(p.base), "--name", cfg.model_name),
                    *("--version", str(VERSIONS[arm])),
                )
            )
        # every run: a re-run after a failed check must not serve the unchecked export
        run(module("export.cli", "verify", str(version_dir), "--model-dir", str(p.runs[arm])))
    step("5. recall and feature artefacts from the world's logs (prices in dollars)")
    if not (p.recall / "manifest.json").exists():
        run(
            module(
                "recommender_client.recall.build",
                *("--data-dir", str(p.data), "--contract", str(p.runs["stable"]), "--out", str(p.recall)),
            )
        )
    return p, auc

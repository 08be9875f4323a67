"""Recall artefacts from a dataset spec: the same files, typing and split that ``recsys-train --data`` reads."""

# Offline only (pandas and the training package's readers); the ranking service never imports it.

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from recommender_client.recall.artifacts import ArtifactError, RecallArtifacts, save_artifacts
from recommender_client.recall.build import BuildConfig, build_artifacts
from training.features import FeatureContract

Rows = Literal["train", "all"]


def spec_events(spec_path: Path, rows: Rows = "train") -> dict[str, np.ndarray]:
    """The spec's rows as columns: ``user_id``, ``item_id``, ``label``, ``timestamp`` and every feature.

    ``rows="train"`` keeps the spec's training part (its split, as training cuts it, without the
    cold-start copies), so recall learns from what the model learned from and nothing of the
    held-out events leaks into the history the seen filter and item-CF read; ``all`` keeps every
    row (a model retrained on everything, then served).

    Raises:
        ArtifactError: the spec has no timestamp column (recall needs event times).
        DataError, SpecError: a bad spec or cell, naming the file, column and row.
    """
    from training.data.spec import read_spec
    from training.data.splits import apply_split
    from training.data.user_logs import read_logs

    spec = read_spec(spec_path)
    if spec.timestamp is None:
        raise ArtifactError(f"{spec_path}: recall needs event times; the spec names no timestamp column")
    frame, _ = read_logs(spec, spec_path.resolve().parent)
    if rows == "train":
        frame = apply_split(frame, spec.split)[0]
    return {name: frame[name].to_numpy() for name in frame.columns}


def build_from_spec(
    spec_path: Path,
    contract: FeatureContract,
    out_dir: Path,
    config: BuildConfig | None = None,
    rows: Rows = "train",
) -> RecallArtifacts:
    """Build the artefacts from the spec's logs (item metadata from each item's newest event) and save them."""
    artifacts = build_artifacts(spec_events(spec_path, rows), contract=contract, config=config)
    save_artifacts(artifacts, out_dir)
    contract.save(out_dir)
    return artifacts

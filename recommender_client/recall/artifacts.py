"""Offline recall artefacts: the files the service loads at start (JSON and numpy .npz, no pandas)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.features import atomic_path, atomic_write_text

ARTIFACTS_VERSION = 1
MANIFEST = "manifest.json"
ITEMS_FILE = "items.json"
USERS_FILE = "users.json"
POPULARITY_FILE = "popularity.npz"
ITEMCF_FILE = "itemcf.npz"
HISTORY_FILE = "history.npz"


class ArtifactError(ValueError):
    """An artefact directory is missing a file or holds inconsistent data (the message names the file)."""


@dataclass(frozen=True)
class Catalog:
    """Every known item with the metadata recall and rerank need, indexed by position."""

    item_ids: tuple[str, ...]
    category: tuple[str, ...]
    tags: tuple[str, ...]  # joined by "|" as in the logs
    publish_time: np.ndarray  # float64 epoch seconds, NaN when unknown
    index: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if not (len(self.category) == len(self.tags) == len(self.publish_time) == n):
            raise ArtifactError(f"catalog columns have different lengths (items: {n})")
        if not self.index:
            object.__setattr__(self, "index", {item: i for i, item in enumerate(self.item_ids)})
        if len(self.index) != n:
            raise ArtifactError("catalog has duplicate item ids")

    def __len__(self) -> int:
        return len(self.item_ids)

    def positions(self, item_ids: Sequence[str]) -> np.ndarray:
        """Catalogue positions of ``item_ids`` (-1 for unknown items), as int64."""
        get = self.index.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))


@dataclass(frozen=True)
class RecallArtifacts:
    """Everything recall, the feature store and rerank read, as built by ``recall.build``.

    Item references inside the arrays are catalogue positions (int32), so the arrays stay compact
    and load without pickle. Ragged per-user or per-category lists use CSR offsets.
    """

    catalog: Catalog
    user_ids: tuple[str, ...]
    as_of: float  # the newest event time in the logs the artefacts were built from
    half_life_days: float
    # popularity, global then per category (categories in catalogue order of first appearance)
    popular_items: np.ndarray  # int32, best first
    popular_scores: np.ndarray  # float32
    category_names: tuple[str, ...]
    category_offsets: np.ndarray  # int64 [len(category_names) + 1]
    category_items: np.ndarray  # int32
    category_scores: np.ndarray  # float32
    # item-CF neighbours: row i holds item i's top neighbours (-1 padded), best first
    cf_neighbors: np.ndarray  # int32 [items, N]
    cf_scores: np.ndarray  # float32 [items, N]
    # per-user history, oldest first
    history_offsets: np.ndarray  # int64 [users + 1]
    history_items: np.ndarray  # int32
    history_times: np.ndarray  # float64
    history_clicked: np.ndarray  # bool
    user_features: Mapping[str, list[Any]]  # feature name -> values aligned with user_ids
    item_features: Mapping[str, list[Any]]  # feature name -> values aligned with catalog
    user_index: Mapping[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.user_index:
            object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids)})

    def popularity_of(self) -> dict[str, float]:
        """Item id -> time-decayed popularity (0 for items never clicked)."""
        out = dict.fromkeys(self.catalog.item_ids, 0.0)
        for pos, score in zip(self.popular_items.tolist(), self.popular_scores.tolist(), strict=True):
            out[self.catalog.item_ids[pos]] = float(score)
        return out


def save_artifacts(artifacts: RecallArtifacts, directory: str | os.PathLike[str]) -> Path:
    """Write every file atomically into ``directory``; the manifest is written last."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cat = artifacts.catalog
    _write_json(
        out / ITEMS_FILE,
        {
            "item_ids": list(cat.item_ids),
            "category": list(cat.category),
            "tags": list(cat.tags),
            "publish_time": [None if not np.isfinite(t) else float(t) for t in cat.publish_time],
            "features": {k: list(v) for k, v in artifacts.item_features.items()},
        },
    )
    _write_json(
        out / USERS_FILE,
        {
            "user_ids": list(artifacts.user_ids),
            "features": {k: list(v) for k, v in artifacts.user_features.items()},
        },
    )
    _write_npz(
        out / POPULARITY_FILE,
        popular_items=artifacts.popular_items.astype(np.int32),
        popular_scores=artifacts.popular_scores.astype(np.float32),
        category_names=np.asarray(artifacts.category_names, dtype=str),
        category_offsets=artifacts.category_offsets.astype(np.int64),
        category_items=artifacts.category_items.astype(np.int32),
        category_scores=artifacts.category_scores.astype(np.float32),
    )
    _write_npz(
        out / ITEMCF_FILE,
        neighbors=artifacts.cf_neighbors.astype(np.int32),
        scores=artifacts.cf_scores.astype(np.float32),
    )
    _write_npz(
        out / HISTORY_FILE,
        offsets=artifacts.history_offsets.astype(np.int64),
        items=artifacts.history_items.astype(np.int32),
        times=artifacts.history_times.astype(np.float64),
        clicked=artifacts.history_clicked.astype(bool),
    )
    _write_json(
        out / MANIFEST,
        {
            "artifacts_version": ARTIFACTS_VERSION,
            "as_of": artifacts.as_of,
            "half_life_days": artifacts.half_life_days,
            "num_items": len(cat),
            "num_users": len(artifacts.user_ids),
        },
    )
    return out


def load_artifacts(directory: str | os.PathLike[str]) -> RecallArtifacts:
    """Load and cross-check an artefact directory written by :func:`save_artifacts`."""
    root = Path(directory)
    manifest = _read_json(root / MANIFEST)
    if manifest.get("artifacts_version") != ARTIFACTS_VERSION:
        raise ArtifactError(
            f"{root / MANIFEST}: unsupported artifacts_version {manifest.get('artifacts_version')!r}"
            f" (expected {ARTIFACTS_VERSION})"
        )
    items = _read_json(root / ITEMS_FILE)
    users = _read_json(root / USERS_FILE)
    try:
        catalog = Catalog(
            item_ids=tuple(items["item_ids"]),
            category=tuple(items["category"]),
            tags=tuple(items["tags"]),
            publish_time=np.array(
                [np.nan if t is None else t for t in items["publish_time"]], dtype=np.float64
            ),
        )
    except KeyError as exc:
        raise ArtifactError(f"{root / ITEMS_FILE}: missing key {exc}") from exc
    pop = _read_npz(root / POPULARITY_FILE)
    cf = _read_npz(root / ITEMCF_FILE)
    hist = _read_npz(root / HISTORY_FILE)
    user_ids = tuple(users.get("user_ids", ()))
    artifacts = RecallArtifacts(
        catalog=catalog,
        user_ids=user_ids,
        as_of=float(manifest["as_of"]),
        half_life_days=float(manifest["half_life_days"]),
        popular_items=pop["popular_items"],
        popular_scores=pop["popular_scores"],
        category_names=tuple(str(c) for c in pop["category_names"].tolist()),
        category_offsets=pop["category_offsets"],
        category_items=pop["category_items"],
        category_scores=pop["category_scores"],
        cf_neighbors=cf["neighbors"],
        cf_scores=cf["scores"],
        history_offsets=hist["offsets"],
        history_items=hist["items"],
        history_times=hist["times"],
        history_clicked=hist["clicked"],
        user_features=dict(users.get("features", {})),
        item_features=dict(items.get("features", {})),
    )
    _check(artifacts, root)
    return artifacts


def _check(a: RecallArtifacts, root: Path) -> None:
    n_items, n_users = len(a.catalog), len(a.user_ids)
    problems = []
    if a.cf_neighbors.shape != a.cf_scores.shape or (
        a.cf_neighbors.size and a.cf_neighbors.shape[0] != n_items
    ):
        problems.append(
            f"{ITEMCF_FILE}: neighbour matrix shape {a.cf_neighbors.shape} does not match {n_items} items"
        )
    if len(a.history_offsets) != n_users + 1:
        problems.append(f"{HISTORY_FILE}: {len(a.history_offsets)} offsets for {n_users} users")
    if len(a.category_offsets) != len(a.category_names) + 1:
        problems.append(
            f"{POPULARITY_FILE}: category offsets do not match {len(a.category_names)} categories"
        )
    for name, arr in (
        ("popular_items", a.popular_items),
        ("category_items", a.category_items),
        ("history items", a.history_items),
    ):
        if arr.size and (arr.min() < 0 or arr.max() >= n_items):
            problems.append(f"{name} refer to items outside the catalogue of {n_items}")
    for name, values in a.user_features.items():
        if len(values) != n_users:
            problems.append(f"{USERS_FILE}: feature {name!r} has {len(values)} values for {n_users} users")
    for name, values in a.item_features.items():
        if len(values) != n_items:
            problems.append(f"{ITEMS_FILE}: feature {name!r} has {len(values)} values for {n_items} items")
    if problems:
        raise ArtifactError(f"{root}: " + "; ".join(problems))


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, separators=(",", ":")))


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as bool


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ArtifactError(f"cannot read artefact {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read artefact {path}: {exc}") from exc

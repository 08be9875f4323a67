"""Offline recall artefacts: the files the service loads at start (JSON and numpy .npz, no pandas)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.atomic_files import atomic_write_bytes

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
    # epoch seconds the set was written (the manifest's built_at; None until saved)
    built_at: float | None = field(default=None, compare=False)

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
    """Write every file atomically into ``directory``; the manifest is written last.

    The manifest lists each file's size and SHA-256 and the time of writing (``built_at``), so
    a reader that polls the directory (the service reloads it without a restart) can tell a
    complete set from one being rewritten under it, and report the set's age.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cat = artifacts.catalog
    files = {
        ITEMS_FILE: _json_bytes(
            {
                "item_ids": list(cat.item_ids),
                "category": list(cat.category),
                "tags": list(cat.tags),
                "publish_time": [None if not np.isfinite(t) else float(t) for t in cat.publish_time],
                "features": {k: list(v) for k, v in artifacts.item_features.items()},
            }
        ),
        USERS_FILE: _json_bytes(
            {
                "user_ids": list(artifacts.user_ids),
                "features": {k: list(v) for k, v in artifacts.user_features.items()},
            }
        ),
        POPULARITY_FILE: _npz_bytes(
            popular_items=artifacts.popular_items.astype(np.int32),
            popular_scores=artifacts.popular_scores.astype(np.float32),
            category_names=np.asarray(artifacts.category_names, dtype=str),
            category_offsets=artifacts.category_offsets.astype(np.int64),
            category_items=artifacts.category_items.astype(np.int32),
            category_scores=artifacts.category_scores.astype(np.float32),
        ),
        ITEMCF_FILE: _npz_bytes(
            neighbors=artifacts.cf_neighbors.astype(np.int32),
            scores=artifacts.cf_scores.astype(np.float32),
        ),
        HISTORY_FILE: _npz_bytes(
            offsets=artifacts.history_offsets.astype(np.int64),
            items=artifacts.history_items.astype(np.int32),
            times=artifacts.history_times.astype(np.float64),
            clicked=artifacts.history_clicked.astype(bool),
        ),
    }
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    manifest = {
        "artifacts_version": ARTIFACTS_VERSION,
        "as_of": artifacts.as_of,
        "half_life_days": artifacts.half_life_days,
        "num_items": len(cat),
        "num_users": len(artifacts.user_ids),
        "built_at": artifacts.built_at if artifacts.built_at is not None else time.time(),
        "files": {
            name: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for name, b in files.items()
        },
    }
    atomic_write_bytes(out / MANIFEST, _json_bytes(manifest))
    return out


def load_artifacts(directory: str | os.PathLike[str]) -> RecallArtifacts:
    """Load and cross-check an artefact directory written by :func:`save_artifacts`.

    Each file is read once and checked against the size and SHA-256 the manifest lists (sets
    written before the manifest had them are only cross-checked), so a set rewritten while it
    is read fails with ``ArtifactError`` instead of mixing two sets. ``built_at`` is the
    manifest's, or its file's mtime for sets written before it had one.
    """
    root = Path(directory)
    manifest = _parse_json(root / MANIFEST, _read_bytes(root / MANIFEST))
    if manifest.get("artifacts_version") != ARTIFACTS_VERSION:
        raise ArtifactError(
            f"{root / MANIFEST}: unsupported artifacts_version {manifest.get('artifacts_version')!r}"
            f" (expected {ARTIFACTS_VERSION})"
        )
    files = manifest.get("files")
    expected: dict[str, Any] = files if isinstance(files, dict) else {}
    mismatched: list[str] = []

    def read(name: str) -> bytes:
        data = _read_bytes(root / name)
        want = expected.get(name)
        if name in expected and (
            not isinstance(want, dict)
            or len(data) != want.get("bytes")
            or hashlib.sha256(data).hexdigest() != want.get("sha256")
        ):
            mismatched.append(name)
        return data

    items = _parse_json(root / ITEMS_FILE, read(ITEMS_FILE))
    users = _parse_json(root / USERS_FILE, read(USERS_FILE))
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
    pop = _parse_npz(root / POPULARITY_FILE, read(POPULARITY_FILE))
    cf = _parse_npz(root / ITEMCF_FILE, read(ITEMCF_FILE))
    hist = _parse_npz(root / HISTORY_FILE, read(HISTORY_FILE))
    if mismatched:  # after parsing: a file that does not even parse is named as such first
        raise ArtifactError(
            f"{root}: {', '.join(mismatched)} do not match the manifest's sizes and sha256 "
            "(the set is being rewritten, or damaged)"
        )
    built_at = manifest.get("built_at")
    if not isinstance(built_at, (int, float)):
        built_at = (root / MANIFEST).stat().st_mtime
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
        built_at=float(built_at),
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


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
    return buffer.getvalue()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artefact {path}: {exc}") from exc


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def _parse_npz(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"cannot read artefact {path}: {exc}") from exc

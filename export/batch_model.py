"""The model a batch job scores with: which version directory, and a scorer that gives every row the
same float32 result whatever batch it arrives in.

Both backends (in-process and Spark) call ``BatchScorer.score`` on whatever Arrow batches they
have; the scorer cuts them into chunks of exactly ``chunk_rows`` rows, padding the last one by
repeating its final row. A dense layer's kernel is chosen by the number of rows, so a row scored
in a 1,000-row call can differ in the last bit from the same row in a 37-row call; with one
chunk size every row goes through the same kernel and the two backends agree bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import ExportError
from export.layout import list_versions, parse_version
from export.publish import BLESSING_FILENAME
from export.saved_model import read_assets
from export.scoring import load_saved_model
from export.signatures import SERVING_DEFAULT
from training.features import FeatureContract

DEFAULT_CHUNK_ROWS = 8192  # large calls: per-call overhead ~halves the CPU per row against 1024
SCORE_OUTPUT = "ctr"
_NUMPY_WIRE = {"string": object, "int64": np.int64, "float32": np.float32}


def blessed_versions(model_dir: Path) -> list[int]:
    """Published versions with a ``<v>.blessing.json`` record whose decision is "blessed"."""
    out = []
    for version in list_versions(model_dir):
        record = model_dir / f"{version}.{BLESSING_FILENAME}"
        try:
            decision = json.loads(record.read_text(encoding="utf-8")).get("decision")
        except (OSError, ValueError, AttributeError):
            continue
        if decision == "blessed":
            out.append(version)
    return out


def resolve_version_dir(model: Path, *, name: str | None = None, version: str | int | None = None) -> Path:
    """The SavedModel directory to score with.

    ``model`` is either a version directory (``<base>/<name>/<v>``, holding saved_model.pb) or a
    base path; with a base, ``name`` is required and ``version`` picks a version, else the
    latest blessed one (the one ``recsys-export publish`` let through).
    """
    model = Path(model)
    if (model / "saved_model.pb").is_file():
        if name is not None or version is not None:
            raise ExportError(f"{model} is a version directory already: give no --model-name/--version")
        return model
    if name is None:
        raise ExportError(
            f"{model} holds no saved_model.pb: give a version directory, or a base path and --model-name"
        )
    model_dir = model / name
    if not model_dir.is_dir():
        raise ExportError(f"no model {name!r} under {model} ({model_dir} is not a directory)")
    if version is not None:
        path = model_dir / str(parse_version(version))
        if not (path / "saved_model.pb").is_file():
            raise ExportError(f"{path} is not a published version (no saved_model.pb)")
        return path
    blessed = blessed_versions(model_dir)
    if not blessed:
        raise ExportError(
            f"{model_dir} has no blessed version (no <v>.blessing.json with decision 'blessed'); "
            "publish one with `recsys-export publish` or name a --version"
        )
    return model_dir / str(blessed[-1])


@dataclass
class BatchScorer:
    """The ``serving_default`` signature of one loaded version, scoring fixed-size chunks.

    Attributes:
        version_dir: the SavedModel directory.
        contract: its feature contract (``assets.extra/feature_contract.json``).
        chunk_rows: rows per signature call; every call has exactly this many (padded).
    """

    version_dir: Path
    contract: FeatureContract
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    _signature: Any = None
    _loaded: Any = None  # the loaded SavedModel: keeps the signature's variables alive

    @classmethod
    def load(cls, version_dir: Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> BatchScorer:
        """Load the contract and the SavedModel once (a Spark worker does this once per process)."""
        if chunk_rows < 1:
            raise ExportError(f"chunk rows must be positive, got {chunk_rows}")
        contract, _ = read_assets(Path(version_dir))
        loaded = load_saved_model(Path(version_dir))
        scorer = cls(Path(version_dir), contract, chunk_rows)
        scorer._signature = loaded.signatures[SERVING_DEFAULT]
        scorer._loaded = loaded
        return scorer

    def score(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 click probabilities for every row of ``inputs`` (wire-dtype rank-1 arrays)."""
        parts = [
            self.call(tensors)[:rows]
            for tensors, rows in chunk_tensors(self.contract, inputs, self.chunk_rows)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def call(self, tensors: Mapping[str, Any]) -> np.ndarray:
        """The signature's float32 scores for one chunk built by ``chunk_tensors`` (padding included)."""
        return np.asarray(self._signature(**tensors)[SCORE_OUTPUT], dtype=np.float32).reshape(-1)

    def warm(self) -> None:
        """Call the signature once on a chunk of the contract's defaults: a freshly loaded function
        spends its first calls optimising its graph, work better done while inputs are still read."""
        defaults = {
            f.name: np.asarray([f.default], dtype=_NUMPY_WIRE[f.dtype]) for f in self.contract.features
        }
        for tensors, _ in chunk_tensors(self.contract, defaults, self.chunk_rows):
            self.call(tensors)


def chunk_tensors(
    contract: FeatureContract, inputs: Mapping[str, np.ndarray], chunk_rows: int
) -> Iterator[tuple[dict[str, Any], int]]:
    """``inputs`` cut into signature tensors of exactly ``chunk_rows`` rows (the last padded), each
    with its number of real rows. It needs no model, so a reader thread can build the next chunks
    while the current ones are scored."""
    total = len(next(iter(inputs.values())))
    for start in range(0, total, chunk_rows):
        stop = min(start + chunk_rows, total)
        chunk = {name: _padded(values[start:stop], chunk_rows) for name, values in inputs.items()}
        yield wire_tensors(contract, chunk), stop - start


def wire_tensors(contract: FeatureContract, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Signature tensors of exactly the contract's dtypes: strings as given (bytes or str, TF
    encodes str as UTF-8), numbers already in their wire dtype (the readers cast them)."""
    import tensorflow as tf

    return {f.name: tf.constant(inputs[f.name], dtype=tf.dtypes.as_dtype(f.dtype)) for f in contract.features}


def _padded(values: np.ndarray, rows: int) -> np.ndarray:
    """``values`` grown to ``rows`` by repeating its last element."""
    missing = rows - len(values)
    if missing <= 0:
        return values
    return np.concatenate([values, np.repeat(values[-1:], missing)])

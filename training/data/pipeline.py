"""Frames to tf.data: the one entry point training uses, plus dispatch over data sources."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.features import Feature, FeatureContract, FeatureKind

from .base import DataError, Splits


def feature_arrays(
    frame: pd.DataFrame, contract: FeatureContract, *, source: str = "frame"
) -> dict[str, np.ndarray]:
    """Contract columns as numpy arrays in wire dtype (object str, int64, float32), checked.

    Raises:
        DataError: naming the column (and first bad row) when a column is missing or cannot be
            represented in its wire dtype.
    """
    missing = [name for name in contract.names if name not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing feature columns {missing}")
    return {f.name: _wire_array(frame[f.name], f, source) for f in contract.features}


def _wire_array(column: pd.Series, feature: Feature, source: str) -> np.ndarray:
    where = f"{source}: column {feature.name!r}"
    if feature.kind is FeatureKind.CATEGORICAL_STRING or feature.is_multi_valued:
        if not (pd.api.types.is_string_dtype(column) or column.dtype == object):
            raise DataError(f"{where}: expected strings ({feature.kind.value}), got dtype {column.dtype}")
        values = column.to_numpy(dtype=object)
        # fast path: a C-level scan; only on failure look for the first offending row
        if pd.api.types.infer_dtype(values, skipna=False) != "string":
            bad = np.flatnonzero([not isinstance(v, str) for v in values])
            if bad.size:
                raise DataError(f"{where}, row {int(bad[0])}: expected a string, got {values[bad[0]]!r}")
        return values
    if feature.kind is FeatureKind.CATEGORICAL_INT:
        if not pd.api.types.is_integer_dtype(column) or column.isna().any():
            raise DataError(
                f"{where}: expected int64 ({feature.kind.value}) without missing values, got dtype {column.dtype}"
            )
        return column.to_numpy(dtype=np.int64)
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(f"{where}: expected numbers (numeric), got dtype {column.dtype}")
    return column.to_numpy(dtype=np.float32, na_value=np.nan)


def label_array(frame: pd.DataFrame, contract: FeatureContract, *, source: str = "frame") -> np.ndarray:
    """The label column as float32 0/1, rejecting NaN or other values with the first bad row."""
    if contract.label not in frame.columns:
        raise DataError(f"{source}: missing label column {contract.label!r}")
    values = frame[contract.label].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isin(values, (0.0, 1.0))
    if np.any(bad):
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: column {contract.label!r}, row {pos}: label must be 0 or 1, got {float(values[pos])!r}"
        )
    return values.astype(np.float32)


def make_tf_dataset(
    frame: pd.DataFrame, contract: FeatureContract, batch_size: int, shuffle_seed: int | None = None
):
    """``(features dict, label)`` batches: every feature ``[batch]`` in its wire dtype, label float32.

    Shuffling is a numpy permutation from ``shuffle_seed`` applied before slicing, so the order
    is exact (a full shuffle, not a windowed one), independent of TensorFlow's global seed and
    identical on every run: training passes ``seed + epoch`` so a resumed run is bit-exact on the
    same machine and thread settings (``tests/training/test_train.py`` asserts equal weights).
    ``shuffle_seed=None`` keeps the frame's order (evaluation).
    """
    import tensorflow as tf  # imported here so the data layer's readers work without TensorFlow

    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if len(frame) == 0:
        raise DataError("cannot make a dataset from an empty frame")
    features = feature_arrays(frame, contract)
    labels = label_array(frame, contract)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(frame))
        features = {name: values[order] for name, values in features.items()}
        labels = labels[order]
    tensors = {
        f.name: tf.constant(features[f.name], dtype=tf.dtypes.as_dtype(f.dtype)) for f in contract.features
    }
    dataset = tf.data.Dataset.from_tensor_slices((tensors, tf.constant(labels, dtype=tf.float32)))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


SOURCES = ("synthetic", "movielens", "criteo")


def load_source(source: str, path: str | os.PathLike[str] | None = None, **options: Any) -> Splits:
    """Load a named source and split it by time into train/valid/test with a contract from train.

    Args:
        source: ``synthetic``, ``movielens``, ``criteo``, or a dataset spec file (``.yaml``/``.yml``).
        path: the data directory or file. For ``synthetic`` it may be None: the data is then
            generated from ``num_rows``/``seed`` (and other SyntheticConfig fields) into
            ``cache_dir`` (reused when already there), or, without ``cache_dir``, through a
            temporary directory removed after loading (the frames stay in memory).
        **options: ``fractions`` (train, valid, test), ``embedding_dim``, and source-specific
            options (criteo: ``max_rows``, ``max_vocab``, ``min_count``, ``hash_buckets``).
    """
    from .spec import is_spec_path

    if is_spec_path(source):  # the user's own logs, declared in a YAML dataset spec
        from .user_logs import load_dataset_spec

        return load_dataset_spec(source, **options)
    if source == "synthetic":
        from .synthetic import load_synthetic

        split_options = _take(options, "fractions", "embedding_dim", "history_len")
        if path is not None:
            if options:
                raise DataError(f"synthetic: unknown options {sorted(options)} when reading from {path}")
            return load_synthetic(path, **split_options)
        if options.get("cache_dir") is not None:
            return load_synthetic(_synthetic_cache(options), **split_options)
        # no cache: generate through a throwaway directory (same files, same code path), keep frames
        with tempfile.TemporaryDirectory(prefix="recsys-synthetic-") as scratch:
            return load_synthetic(_synthetic_cache({**options, "cache_dir": scratch}), **split_options)
    if path is None:
        raise DataError(f"source {source!r} needs a path")
    if source == "movielens":
        from .movielens import load_movielens

        return load_movielens(path, **options)
    if source == "criteo":
        from .criteo import load_criteo

        return load_criteo(path, **options)
    raise DataError(f"unknown data source {source!r} (choose from {', '.join(SOURCES)})")


def _take(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: options.pop(name) for name in names if name in options}


def _synthetic_cache(options: dict[str, Any]) -> Path:
    """Generate (or reuse) the synthetic data set described by ``options``; return its directory."""
    from .synthetic import write_synthetic
    from .synthetic_world import SyntheticConfig

    options = dict(options)
    cache_dir = options.pop("cache_dir")
    chunk_rows = int(options.pop("chunk_rows", 200_000))
    try:
        config = SyntheticConfig(**options)
    except TypeError as exc:
        raise DataError(f"synthetic: bad options {sorted(options)}: {exc}") from exc
    target = Path(cache_dir) / f"synthetic-n{config.num_rows}-s{config.seed}-{_config_digest(config)}"
    if (target / "synthetic.json").is_file():
        return target
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
    write_synthetic(staging, config, chunk_rows=chunk_rows)
    os.chmod(staging, 0o755)  # mkdtemp is private; the cached data set is for everyone
    try:
        os.replace(staging, target)
    except OSError:  # another process finished the same data set first; theirs is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _config_digest(config: Any) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

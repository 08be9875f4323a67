"""make_tf_dataset and load_source: wire dtypes, exact values, reproducible shuffling, caching, errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from training.data import DataError, Splits, load_source, make_tf_dataset
from training.data.synthetic import load_synthetic


@pytest.fixture(scope="module")
def splits(synthetic_dir: Path) -> Splits:
    return load_synthetic(synthetic_dir)


def _collect(dataset: tf.data.Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    features: dict[str, list[np.ndarray]] = {}
    labels = []
    for batch, label in dataset:
        for name, tensor in batch.items():
            features.setdefault(name, []).append(tensor.numpy())
        labels.append(label.numpy())
    return {k: np.concatenate(v) for k, v in features.items()}, np.concatenate(labels)


def test_batches_have_wire_dtypes_and_shapes(splits: Splits) -> None:
    frame = splits.valid.iloc[:1_000]
    dataset = make_tf_dataset(frame, splits.contract, batch_size=256)
    wire = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
    sizes = []
    for batch, label in dataset:
        assert list(batch) == list(splits.contract.names)
        for feature in splits.contract.features:
            assert batch[feature.name].dtype == wire[feature.dtype]
            assert batch[feature.name].shape.rank == 1
            assert batch[feature.name].shape[0] == label.shape[0]
        assert label.dtype == tf.float32
        sizes.append(int(label.shape[0]))
    assert sizes == [256, 256, 256, 232]


def test_unshuffled_values_equal_the_frame(splits: Splits) -> None:
    frame = splits.test.iloc[:700]
    features, labels = _collect(make_tf_dataset(frame, splits.contract, batch_size=128))
    np.testing.assert_array_equal(labels, frame["label"].to_numpy(dtype=np.float32))
    assert [v.decode() for v in features["tags"]] == frame["tags"].tolist()
    np.testing.assert_array_equal(features["position"], frame["position"].to_numpy())
    np.testing.assert_array_equal(features["price"], frame["price"].to_numpy(dtype=np.float32))


def test_shuffle_is_a_reproducible_permutation(splits: Splits) -> None:
    frame = splits.train.iloc[:2_000].assign(label=np.arange(2_000) % 2)
    frame = frame.assign(user_activity=np.arange(2_000, dtype=np.float32))  # a row id to track order
    first, _ = _collect(make_tf_dataset(frame, splits.contract, batch_size=100, shuffle_seed=5))
    again, _ = _collect(make_tf_dataset(frame, splits.contract, batch_size=100, shuffle_seed=5))
    other, _ = _collect(make_tf_dataset(frame, splits.contract, batch_size=100, shuffle_seed=6))
    order = first["user_activity"].astype(int)
    np.testing.assert_array_equal(order, again["user_activity"].astype(int))
    assert not np.array_equal(order, other["user_activity"].astype(int))
    assert sorted(order.tolist()) == list(range(2_000))
    np.testing.assert_array_equal(order, np.random.default_rng(5).permutation(2_000))
    # rows move as a whole: each row's item_id follows its row id
    np.testing.assert_array_equal([v.decode() for v in first["item_id"]], frame["item_id"].to_numpy()[order])


def test_bad_frames_name_the_column_and_row(splits: Splits) -> None:
    frame = splits.valid.iloc[:50].copy()
    with pytest.raises(DataError, match=r"missing feature columns \['price'\]"):
        make_tf_dataset(frame.drop(columns=["price"]), splits.contract, batch_size=8)
    with pytest.raises(DataError, match=r"column 'label', row 3: label must be 0 or 1, got nan"):
        make_tf_dataset(
            frame.assign(label=frame["label"].astype(float).where(frame.index != 3)), splits.contract, 8
        )
    with pytest.raises(DataError, match=r"column 'position': expected int64"):
        make_tf_dataset(frame.assign(position=frame["position"].astype(str)), splits.contract, 8)
    with pytest.raises(DataError, match=r"column 'device', row 2: expected a string, got 7"):
        make_tf_dataset(
            frame.assign(device=[7 if i == 2 else "mobile" for i in range(50)]), splits.contract, 8
        )
    with pytest.raises(DataError, match=r"column 'price': expected numbers"):
        make_tf_dataset(frame.assign(price="cheap"), splits.contract, 8)
    with pytest.raises(DataError, match="empty frame"):
        make_tf_dataset(frame.iloc[:0], splits.contract, 8)
    with pytest.raises(DataError, match="batch_size"):
        make_tf_dataset(frame, splits.contract, 0)


def test_load_source_reads_and_caches_synthetic(synthetic_dir: Path, tmp_path: Path) -> None:
    direct = load_source("synthetic", path=synthetic_dir)
    assert direct.name == "synthetic"
    assert direct.sizes() == {"train": 9_600, "valid": 1_200, "test": 1_200}
    options = {"num_rows": 2_000, "seed": 4, "num_users": 50, "num_items": 40, "num_categories": 5}
    generated = load_source("synthetic", cache_dir=tmp_path, **options)
    cached = list(tmp_path.glob("synthetic-n2000-s4-*"))
    assert len(cached) == 1
    stamp = (cached[0] / "events.parquet").stat().st_mtime_ns
    again = load_source("synthetic", cache_dir=tmp_path, **options)
    assert (cached[0] / "events.parquet").stat().st_mtime_ns == stamp, "second call must reuse the cache"
    pd.testing.assert_frame_equal(generated.test, again.test)
    assert generated.contract == again.contract
    custom = load_source("synthetic", cache_dir=tmp_path, fractions=(0.5, 0.25, 0.25), **options)
    assert custom.sizes() == {"train": 1_000, "valid": 500, "test": 500}


def test_load_source_without_cache_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where TemporaryDirectory goes
    options = {"num_rows": 1_500, "seed": 8, "num_users": 40, "num_items": 30, "num_categories": 4}
    loaded = load_source("synthetic", **options)
    assert list(scratch.iterdir()) == []
    cached = load_source("synthetic", cache_dir=tmp_path / "cache", **options)
    pd.testing.assert_frame_equal(loaded.train, cached.train)
    assert loaded.contract == cached.contract


def test_load_source_errors(synthetic_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data source 'parquet'"):
        load_source("parquet", path=tmp_path)
    with pytest.raises(DataError, match="'movielens' needs a path"):
        load_source("movielens")
    with pytest.raises(DataError, match=r"unknown options \['num_rows'\]"):
        load_source("synthetic", path=synthetic_dir, num_rows=5)
    with pytest.raises(DataError, match="bad options"):
        load_source("synthetic", cache_dir=tmp_path, num_rows=100, colour="red")
    with pytest.raises(DataError, match="directory not found"):
        load_source("synthetic", path=tmp_path / "absent")

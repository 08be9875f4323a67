"""Criteo TSV: the synthetic writer's format, the loader's parsing, missing values, contract, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import DataError, load_source
from training.data.criteo import (
    CAT_COLUMNS,
    COLUMNS,
    INT_COLUMNS,
    criteo_contract,
    read_criteo_tsv,
    signed_log1p,
    write_criteo_tsv,
)
from training.features import Entity, FeatureContract, FeatureKind


def _row(label: str = "1", ints: list[str] | None = None, cats: list[str] | None = None) -> str:
    ints = ints if ints is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else [f"{i:08x}" for i in range(26)]
    return "\t".join([label, *ints, *cats]) + "\n"


@pytest.fixture(scope="module")
def criteo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_criteo_tsv(tmp_path_factory.mktemp("criteo") / "train.txt", 6_000, seed=3, missing_rate=0.1)


def test_writer_produces_the_criteo_format(criteo_file: Path) -> None:
    lines = criteo_file.read_text().splitlines()
    assert len(lines) == 6_000
    fields = [line.split("\t") for line in lines]
    assert {len(f) for f in fields} == {40}
    assert {f[0] for f in fields} == {"0", "1"}
    ints = [v for f in fields for v in f[1:14]]
    cats = [v for f in fields for v in f[14:]]
    assert all(v == "" or v.lstrip("-").isdigit() for v in ints)
    assert all(v == "" or (len(v) == 8 and int(v, 16) >= 0) for v in cats)
    missing = (sum(v == "" for v in ints) + sum(v == "" for v in cats)) / (len(ints) + len(cats))
    assert 0.08 < missing < 0.12
    assert any(v.startswith("-") for v in ints), "I2 goes negative like the real data"
    again = write_criteo_tsv(criteo_file.parent / "again.txt", 6_000, seed=3, missing_rate=0.1)
    assert again.read_bytes() == criteo_file.read_bytes()
    assert again.stat().st_mode & 0o777 == 0o644, "readable by servers running as another user"
    assert sorted(p.name for p in criteo_file.parent.iterdir()) == ["again.txt", "train.txt"]  # no temp files


def test_reader_parses_values_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "day.tsv"
    ints = ["5", "", "-1"] + ["0"] * 10
    cats = ["", "DEADBEEF"] + ["0a1b2c3d"] * 24
    path.write_text(_row("0", ints, cats) + _row("1"))
    frame = read_criteo_tsv(path)
    assert list(frame.columns) == list(COLUMNS)
    assert frame["label"].tolist() == [0, 1]
    assert frame["I1"].dtype == np.float32
    assert frame["I1"].iloc[0] == 5 and frame["I3"].iloc[0] == -1 and frame["I13"].iloc[1] == 12
    assert np.isnan(frame["I2"].iloc[0])
    assert frame["C1"].iloc[0] == "" and frame["C2"].iloc[0] == "deadbeef"
    np.testing.assert_allclose(signed_log1p(np.array([-3.0, 0.0, 3.0])), [-np.log(4), 0, np.log(4)])


def test_load_splits_in_file_order_and_fills_missing(criteo_file: Path) -> None:
    splits = load_source("criteo", criteo_file)
    assert splits.sizes() == {"train": 4_800, "valid": 600, "test": 600}
    assert splits.train["timestamp"].max() < splits.valid["timestamp"].min() < splits.test["timestamp"].min()
    raw = read_criteo_tsv(criteo_file)
    for name in INT_COLUMNS:
        counts = raw[name].iloc[:4_800].to_numpy(dtype=np.float64)
        logs = np.sign(counts) * np.log(1.0 + np.abs(counts))  # an independent route to log1p
        mean = np.nanmean(logs)
        feature = splits.contract[name]
        assert feature.transform == "log1p"
        assert feature.mean == pytest.approx(mean, rel=1e-6)
        assert feature.std == pytest.approx(np.nanstd(logs), rel=1e-6)
        assert feature.default == pytest.approx(np.sign(mean) * (np.exp(abs(mean)) - 1.0), rel=1e-9)
        holes = np.isnan(counts)
        assert holes.any()
        filled = splits.train[name].to_numpy()
        np.testing.assert_array_equal(filled[holes], np.float32(feature.default))
        np.testing.assert_array_equal(filled[~holes], counts[~holes].astype(np.float32))  # raw, untransformed
        assert float(signed_log1p(np.float64(filled[holes][0]))) == pytest.approx(mean, abs=1e-6)
        assert splits.train[name].dtype == np.float32
    assert dict(splits.contract.metadata) == {"source": "criteo"}
    plain = load_source("criteo", criteo_file, log_counts=False).contract
    assert {plain[i].transform for i in INT_COLUMNS} == {"none"}
    assert plain["I1"].mean == pytest.approx(
        np.nanmean(raw["I1"].iloc[:4_800].to_numpy(np.float64)), rel=1e-6
    )
    assert (splits.train[list(CAT_COLUMNS)] == "").to_numpy().any(), "missing categoricals stay empty strings"


def test_contract_vocab_or_hash_buckets(criteo_file: Path, tmp_path: Path) -> None:
    train = load_source("criteo", criteo_file).train
    contract = criteo_contract(train, max_vocab=100, min_count=2)
    for name in CAT_COLUMNS:
        feature = contract[name]
        assert feature.kind is FeatureKind.CATEGORICAL_STRING and feature.entity is Entity.CONTEXT
        counts = train[name][train[name] != ""].value_counts()
        kept = int((counts >= 2).sum())
        if kept <= 100:
            assert feature.vocabulary is not None and len(feature.vocabulary) == kept and feature.num_oov >= 1
        else:
            assert feature.hash_buckets is not None and feature.hash_buckets >= 2 * len(counts)
    assert any(contract[c].hash_buckets for c in CAT_COLUMNS) and any(
        contract[c].vocabulary for c in CAT_COLUMNS
    )
    assert all(contract[i].kind is FeatureKind.NUMERIC for i in INT_COLUMNS)
    assert FeatureContract.load(contract.save(tmp_path)) == contract
    forced = criteo_contract(train, hash_buckets=1_000)
    assert {forced[c].hash_buckets for c in CAT_COLUMNS} == {1_000}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"file is empty"),
        ("\n\n", r"no data rows"),
        (_row() + "1\t2\t3\n", r"line 2: expected 40 fields, saw 3"),
        (_row() + _row("") , r"column 'label', line 2: missing label \(NaN\)"),
        (_row("2"), r"column 'label', line 1: label must be 0 or 1, got '2'"),
        (_row() + _row("1", ["x"] + ["1"] * 12), r"column 'I1', line 2: unparsable integer 'x'"),
        (_row("1", ["1"] * 5 + ["2.5"] + ["1"] * 7), r"column 'I6', line 1: unparsable integer '2.5'"),
        (_row("1", None, ["zz"] + ["0a1b2c3d"] * 25), r"column 'C1', line 1: expected 8 hex digits or empty, got 'zz'"),
    ],
)  # fmt: skip
def test_bad_input_names_file_column_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_source("criteo", path)
    assert "bad.tsv" in str(info.value)


def test_too_few_rows_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "two.tsv"
    path.write_text(_row() + _row("0"))
    with pytest.raises(DataError, match="too few to split"):
        load_source("criteo", path)
    with pytest.raises(DataError, match="file not found"):
        load_source("criteo", tmp_path / "nope.tsv")

"""Time splits with ties, fractions, AUC by ranks, parsing, and bad synthetic parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.data.base import DataError, parse_numeric, time_cut_points, time_split
from training.data.metrics import roc_auc
from training.data.synthetic import EVENTS_FILE, read_events


def test_cuts_move_past_ties_so_train_is_strictly_earlier() -> None:
    times = np.array([1, 2, 3, 4, 5, 5, 5, 8, 9, 10])
    assert time_cut_points(times, (0.5, 0.3, 0.2)) == (7, 8)  # 5 at index 4 pulls indices 5, 6 into train
    frame = pd.DataFrame({"timestamp": times[::-1], "x": np.arange(10)})
    train, valid, test = time_split(frame, (0.5, 0.3, 0.2))
    assert train["timestamp"].tolist() == [1, 2, 3, 4, 5, 5, 5]
    assert valid["timestamp"].tolist() == [8] and test["timestamp"].tolist() == [9, 10]


def test_split_errors() -> None:
    with pytest.raises(DataError, match="sum to 1"):
        time_cut_points(np.arange(10), (0.5, 0.3, 0.3))
    with pytest.raises(DataError, match=r"three numbers in \(0, 1\)"):
        time_cut_points(np.arange(10), (0.9, 0.1))
    with pytest.raises(DataError, match="too many equal timestamps"):
        time_cut_points(np.array([1, 1, 1, 1, 2]), (0.4, 0.4, 0.2))
    with pytest.raises(DataError, match="sorted by timestamp"):
        time_cut_points(np.array([3, 2, 1, 4]), (0.5, 0.25, 0.25))
    with pytest.raises(DataError, match="no column 'timestamp'"):
        time_split(pd.DataFrame({"t": [1, 2, 3]}))


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # coarse scores: many ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    with pytest.raises(DataError, match="both classes"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(DataError, match="finite"):
        roc_auc(np.array([0, 1]), np.array([0.2, np.nan]))


def test_parse_numeric_reports_first_bad_line() -> None:
    values = pd.Series(["1", " 2 ", "", "x", "4.5"], dtype=object)
    parsed = parse_numeric(values.iloc[:3], source="f.tsv", column="n", allow_missing=True, row_offset=1)
    np.testing.assert_array_equal(parsed[:2], [1.0, 2.0])
    assert np.isnan(parsed[2])
    with pytest.raises(DataError, match=r"f\.tsv: column 'n', line 4: unparsable number 'x' \(1 bad value"):
        parse_numeric(values, source="f.tsv", column="n", allow_missing=True, row_offset=1)
    with pytest.raises(DataError, match=r"line 3: missing value"):
        parse_numeric(values, source="f.tsv", column="n", row_offset=1)
    with pytest.raises(DataError, match=r"line 5: unparsable integer '4.5'"):
        parse_numeric(values.iloc[[0, 1, 4]], source="f.tsv", column="n", integer=True, row_offset=3)


@pytest.fixture()
def events(synthetic_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(synthetic_dir / EVENTS_FILE)


def _write(frame: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / EVENTS_FILE
    frame.to_parquet(path, index=False)
    return path


def test_bad_synthetic_parquet(events: pd.DataFrame, tmp_path: Path) -> None:
    head = events.iloc[:20].copy()
    with pytest.raises(DataError, match=r"events\.parquet: missing columns \['p_true'\]"):
        read_events(_write(head.drop(columns=["p_true"]), tmp_path))
    nan_label = head.assign(label=head["label"].astype(float).where(head.index != 4))
    with pytest.raises(
        DataError, match=r"events\.parquet: column 'label', row 4: label must be 0 or 1, got nan"
    ):
        read_events(_write(nan_label, tmp_path))
    with pytest.raises(DataError, match=r"column 'hour': expected int64, got dtype str"):
        read_events(_write(head.assign(hour=head["hour"].astype(str)), tmp_path))
    with pytest.raises(DataError, match=r"column 'p_true', row 0: invalid value 1.5"):
        read_events(_write(head.assign(p_true=[1.5] + [0.5] * 19), tmp_path))
    with pytest.raises(DataError, match=r"column 'device', row 2: expected non-null strings"):
        read_events(_write(head.assign(device=[None if i == 2 else "mobile" for i in range(20)]), tmp_path))
    with pytest.raises(DataError, match="file has no rows"):
        read_events(_write(head.iloc[:0], tmp_path))
    empty = tmp_path / "zero" / EVENTS_FILE
    empty.parent.mkdir()
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"zero/events\.parquet: file is empty"):
        read_events(empty.parent)
    empty.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_events(empty.parent)

"""Shared pieces of the data layer: the Splits container, the error type, time splits and parsing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.atomic_files import atomic_path
from training.features import FeatureContract

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


class DataError(ValueError):
    """Input data is missing, malformed or inconsistent; the message names file, column and row."""


@dataclass(frozen=True)
class Splits:
    """A data source cut into train/valid/test, with the contract built from train.

    ``split`` says how it was cut (``SplitSpec.describe()``), for reports. Every frame holds every contract feature column in its wire dtype (str, int64, float32),
    ``label`` (int64 0/1) and, where the source knows them, ``p_true``, ``user_id``,
    ``item_id`` and ``timestamp``.
    """

    name: str
    contract: FeatureContract
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    split: str = "global time split"

    def sizes(self) -> dict[str, int]:
        """Rows per split, for logs and reports."""
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/valid/test fractions: three positive numbers summing to one."""
    if len(fractions) != 3 or any(not (0 < f < 1) for f in fractions):
        raise DataError(f"split fractions must be three numbers in (0, 1), got {tuple(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions must sum to 1, got {tuple(fractions)} (sum {sum(fractions)})")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def time_cut_points(times: np.ndarray, fractions: Sequence[float]) -> tuple[int, int]:
    """Row indices cutting time-sorted ``times`` into train/valid/test.

    Cuts move forward to the end of a run of equal timestamps, so every training event is
    strictly earlier than every validation event (and likewise valid < test): no tie ever
    lets the same instant appear on both sides of a boundary.
    """
    train_f, valid_f, _ = check_fractions(fractions)
    n = len(times)
    if n < 3:
        raise DataError(f"need at least 3 rows to split into train/valid/test, got {n}")
    if n > 1 and np.any(np.diff(times) < 0):
        raise DataError("time split needs rows sorted by timestamp")
    cuts = []
    for target in (round(n * train_f), round(n * (train_f + valid_f))):
        target = min(max(int(target), 1), n - 1)
        # first index whose time is greater than the time just before the cut
        cuts.append(int(np.searchsorted(times, times[target - 1], side="right")))
    first, second = cuts
    if not (0 < first < second < n):
        raise DataError(
            f"cannot cut {n} rows into non-empty train/valid/test by time with fractions "
            f"{tuple(fractions)}: too many equal timestamps at the boundaries"
        )
    return first, second


def time_split(
    frame: pd.DataFrame, fractions: Sequence[float] = DEFAULT_FRACTIONS, *, time_column: str = "timestamp"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Sort by time (stable) and cut into train/valid/test so training never sees the future."""
    if time_column not in frame.columns:
        raise DataError(f"cannot split by time: no column {time_column!r}")
    ordered = frame.sort_values(time_column, kind="stable")
    first, second = time_cut_points(ordered[time_column].to_numpy(), fractions)
    parts = (ordered.iloc[:first], ordered.iloc[first:second], ordered.iloc[second:])
    return tuple(p.reset_index(drop=True) for p in parts)  # type: ignore[return-value]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, source: str) -> None:
    """Raise a DataError listing every required column missing from ``frame``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing} (have {list(frame.columns)})")


def parse_numeric(
    values: pd.Series,
    *,
    source: str,
    column: str,
    integer: bool = False,
    allow_missing: bool = False,
    row_offset: int = 0,
    row_word: str = "line",
) -> np.ndarray:
    """Parse a column of strings (or numbers) into float64, naming the first bad row.

    Args:
        values: the raw column.
        source: file name for the message.
        column: column name for the message.
        integer: require whole numbers.
        allow_missing: empty/NaN becomes NaN instead of an error.
        row_offset: added to the 0-based position to report a file line (e.g. 2 with a header).
        row_word: "line" for text files, "row" for tables.
    """
    raw = values.reset_index(drop=True)
    text = raw.astype(str).str.strip() if raw.dtype == object or pd.api.types.is_string_dtype(raw) else None
    parsed = pd.to_numeric(text if text is not None else raw, errors="coerce").to_numpy(dtype=np.float64)
    missing = raw.isna().to_numpy() | (text.eq("").to_numpy() if text is not None else False)
    bad = np.isnan(parsed) & ~missing
    if integer:
        bad |= ~np.isnan(parsed) & (parsed != np.round(parsed))
    if not allow_missing:
        bad |= missing
    if np.any(bad):
        pos = int(np.flatnonzero(bad)[0])
        what = "missing value" if missing[pos] else f"unparsable {'integer' if integer else 'number'}"
        shown = raw.iloc[pos]
        raise DataError(
            f"{source}: column {column!r}, {row_word} {pos + row_offset}: {what} {shown!r}"
            f" ({int(bad.sum())} bad value(s) in the column)"
        )
    return parsed


def check_labels(
    labels: np.ndarray, *, source: str, column: str = "label", row_offset: int = 0, row_word: str = "row"
) -> np.ndarray:
    """Labels must be exactly 0 or 1 (no NaN); returns them as int64."""
    values = np.asarray(labels, dtype=np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if np.any(bad):
        pos = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: column {column!r}, {row_word} {pos + row_offset}: label must be 0 or 1, "
            f"got {float(values[pos])!r} ({int(bad.sum())} bad label(s))"
        )
    return values.astype(np.int64)


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write one parquet file via a temporary file and a rename, so readers never see half a file."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def read_parquet_checked(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Read a parquet file, turning I/O and format problems into DataErrors naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable parquet file: {exc}") from exc
    require_columns(frame, columns, source=str(path))
    if frame.empty:
        raise DataError(f"{path}: file has no rows")
    return frame

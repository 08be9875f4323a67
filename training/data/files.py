"""Reading the user's Parquet/CSV files and typing their columns, every error naming file, column, row."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from training.features import MULTI_VALUE_SEPARATOR

from .base import DataError, check_labels, parse_numeric

MAX_FILES = 1000
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")


@dataclass(frozen=True)
class Table:
    """One file's needed columns as read; CSV cells are strings, Parquet keeps its dtypes."""

    path: Path
    frame: pd.DataFrame
    is_csv: bool

    @property
    def row_offset(self) -> int:
        """Added to a 0-based row to name it: CSV line numbers count the header as line 1."""
        return 2 if self.is_csv else 0

    @property
    def row_word(self) -> str:
        return "line" if self.is_csv else "row"

    def where(self, column: str, pos: int) -> str:
        return f"{self.path}: column {column!r}, {self.row_word} {pos + self.row_offset}"


def resolve_files(patterns: Sequence[str], base: Path) -> list[Path]:
    """Expand glob patterns (relative to ``base``) in order, each sorted; at most MAX_FILES files."""
    found: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())
        if not matches:
            raise DataError(f"files: pattern {pattern!r} matches no file (looked in {base})")
        found.extend(p for p in matches if p not in found)
        if len(found) > MAX_FILES:
            raise DataError(f"files: more than {MAX_FILES} files match {list(patterns)}")
    return found


def read_table(path: Path, columns: Sequence[str], *, fmt: str = "auto", csv_separator: str = ",") -> Table:
    """Read ``columns`` of one Parquet or CSV file; a missing column is an error naming the file."""
    suffix = path.suffix.lower()
    is_csv = fmt == "csv" or (fmt == "auto" and suffix in CSV_SUFFIXES)
    if not is_csv and fmt == "auto" and suffix not in PARQUET_SUFFIXES:
        raise DataError(f"{path}: unknown file type {suffix!r} (Parquet: .parquet/.pq, CSV: .csv/.tsv/.txt)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    wanted = list(dict.fromkeys(columns))
    try:
        if is_csv:
            separator = "\t" if suffix == ".tsv" and csv_separator == "," else csv_separator
            have = list(pd.read_csv(path, sep=separator, nrows=0, dtype=str).columns)
            _require(path, have, wanted)
            frame = pd.read_csv(path, sep=separator, usecols=wanted, dtype=str, keep_default_na=False)
        else:
            have = list(pq.read_schema(path).names)
            _require(path, have, wanted)
            frame = pd.read_parquet(path, columns=wanted)
    except DataError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many unrelated types for malformed files
        raise DataError(f"{path}: cannot read as {'CSV' if is_csv else 'Parquet'}: {exc}") from exc
    return Table(path, frame[wanted].reset_index(drop=True), is_csv)


def _require(path: Path, have: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (have {list(have)[:30]})")


def _csv_type(values: pd.Series) -> str:
    """``integer``, ``float`` or ``string``: what a CSV column's text holds."""
    text = values.str.strip()
    present = text[text != ""]
    parsed = pd.to_numeric(present, errors="coerce")
    if present.empty or parsed.isna().any():
        return "string"
    whole = bool((parsed == np.round(parsed)).all()) and len(present) == len(text)
    return "integer" if whole and not present.str.contains(r"[.eE]").any() else "float"


def column_type(tables: Sequence[Table], column: str) -> str:
    """The column's type over all files: ``integer``, ``float``, ``string`` or ``datetime``."""
    seen = set()
    for table in tables:
        values = table.frame[column]
        if table.is_csv:
            seen.add(_csv_type(values))
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
            seen.add("integer")
        elif pd.api.types.is_float_dtype(values):
            seen.add("float")
        elif pd.api.types.is_datetime64_any_dtype(values):
            seen.add("datetime")
        else:
            seen.add("string")
    for kind in ("string", "datetime", "float"):
        if kind in seen:
            return kind
    return "integer"


def infer_kind(column_kind: str, separator: str | None) -> str:
    """Strings and integers are categorical (ids, codes, hours), floats numeric."""
    if separator is not None:
        return "multi_categorical"
    return "numeric" if column_kind == "float" else "categorical"


def _numbers(table: Table, column: str, *, integer: bool = False, allow_missing: bool = False) -> np.ndarray:
    return parse_numeric(
        table.frame[column],
        source=str(table.path),
        column=column,
        integer=integer,
        allow_missing=allow_missing,
        row_offset=table.row_offset,
        row_word=table.row_word,
    )


def strings(table: Table, column: str, *, required: bool = False) -> np.ndarray:
    """The column as text; whole floats print without ``.0``; missing is ``""`` (or an error)."""
    values = table.frame[column]
    if pd.api.types.is_float_dtype(values):
        text = [
            ("" if np.isnan(v) else (f"{v:.0f}" if float(v).is_integer() else repr(float(v)))) for v in values
        ]
        out = np.array(text, dtype=object)
    else:
        out = values.astype(object).where(values.notna(), "").map(str).str.strip().to_numpy(dtype=object)
    if required:
        empty = np.flatnonzero(out == "")
        if empty.size:
            raise DataError(f"{table.where(column, int(empty[0]))}: missing value")
    return out


def typed_column(table: Table, column: str, kind: str, column_kind: str, separator: str | None) -> np.ndarray:
    """One feature column in its wire dtype: int64 or str (categorical), ``|``-joined str, float32."""
    if kind == "numeric":
        if pd.api.types.is_datetime64_any_dtype(table.frame[column]):
            raise DataError(f"{table.path}: column {column!r}: a datetime cannot be a numeric feature")
        return _numbers(table, column, allow_missing=True).astype(np.float32)
    if kind == "categorical" and column_kind == "integer":
        return _numbers(table, column, integer=True).astype(np.int64)
    text = strings(table, column)
    if kind == "categorical":
        return text
    sep = separator or MULTI_VALUE_SEPARATOR
    joined = np.empty(len(text), dtype=object)
    for pos, value in enumerate(text):
        tokens = [t.strip() for t in value.split(sep)]
        if sep != MULTI_VALUE_SEPARATOR and any(MULTI_VALUE_SEPARATOR in t for t in tokens):
            raise DataError(
                f"{table.where(column, pos)}: token contains {MULTI_VALUE_SEPARATOR!r}: {value!r}"
            )
        joined[pos] = MULTI_VALUE_SEPARATOR.join(t for t in tokens if t)
    return joined


def labels(table: Table, column: str) -> np.ndarray:
    """0/1 labels as int64; anything else names the file, column and row."""
    values = table.frame[column]
    raw = values.astype(np.float64) if pd.api.types.is_bool_dtype(values) else _numbers(table, column)
    return check_labels(
        raw, source=str(table.path), column=column, row_offset=table.row_offset, row_word=table.row_word
    )


def timestamps(table: Table, column: str) -> np.ndarray:
    """Event times as numbers (datetimes and ISO-8601 text become epoch seconds)."""
    values = table.frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    elif not table.is_csv or _csv_type(values) != "string":
        numbers = _numbers(table, column)
        return numbers.astype(np.int64) if np.all(numbers == np.round(numbers)) else numbers
    else:
        parsed = pd.to_datetime(values.str.strip(), utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        shown = values.iloc[int(bad[0])]
        raise DataError(f"{table.where(column, int(bad[0]))}: not a time (number or ISO 8601): {shown!r}")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.int64)

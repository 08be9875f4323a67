"""Strict readers for delimited text files: every value as a string, structural errors named by line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import DataError


def read_delimited(
    path: Path,
    *,
    sep: str,
    num_fields: int,
    header_lines: int = 0,
    encoding: str = "utf-8",
    max_rows: int | None = None,
) -> pd.DataFrame:
    """Read a headerless block of ``num_fields`` columns (named 0..n-1) as strings.

    Splitting is done line by line (no quoting: titles may contain quotes), so a line with too
    many or too few fields is reported with its exact 1-based line number, which pandas'
    parser cannot do reliably (it silently pads short rows and turns extra fields into an index).
    Trailing blank lines are ignored; a blank line inside the data is an error (it would shift
    every later line number). Empty fields stay empty strings.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    rows: list[list[str]] = []
    blank = 0  # first blank line seen; only trailing blank lines are allowed
    try:
        with path.open(encoding=encoding, newline="") as handle:
            for number, line in enumerate(handle, start=1):
                if number <= header_lines:
                    continue
                if max_rows is not None and len(rows) >= max_rows:
                    break
                text = line.rstrip("\r\n")
                if not text.strip():
                    blank = blank or number
                    continue
                if blank:
                    raise DataError(f"{path}: line {blank}: blank line inside the data")
                fields = text.split(sep)
                if len(fields) != num_fields:
                    raise DataError(f"{path}: line {number}: expected {num_fields} fields, saw {len(fields)}")
                rows.append(fields)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: file has no data rows")
    columns = list(zip(*rows, strict=True))
    return pd.DataFrame({i: pd.Series(col, dtype=object) for i, col in enumerate(columns)})


def read_atomic(path: Path, required: dict[str, str]) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, typed header ``name:type``).

    Args:
        path: the file.
        required: column name -> RecBole type (``token``, ``float``, ``token_seq``...) that must
            be present with that type; other columns are read too.

    Returns:
        Columns named without their type suffix, all values as strings.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    names, types = [], []
    for position, field in enumerate(header, start=1):
        name, colon, kind = field.partition(":")
        if not colon or not name or not kind:
            raise DataError(f"{path}: line 1: header field {position} {field!r} is not 'name:type'")
        names.append(name)
        types.append(kind)
    declared = dict(zip(names, types, strict=True))
    for name, kind in required.items():
        if name not in declared:
            raise DataError(f"{path}: missing column {name!r} in header {header}")
        if declared[name] != kind:
            raise DataError(f"{path}: column {name!r} has type {declared[name]!r}, expected {kind!r}")
    frame = read_delimited(path, sep="\t", num_fields=len(names), header_lines=1)
    frame.columns = names
    return frame

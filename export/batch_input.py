"""A batch job's input tables: which files, checked against the feature contract before any
scoring, and read as bounded Arrow batches in the contract's wire dtypes.

Types are checked by kind, not width: a string feature takes string columns, an int64 feature
integer columns, a float32 feature integer or floating columns (Parquet written by pandas holds
float64; it is cast to float32 here, as TF Serving's JSON casts any number). Anything else is a
wrong type naming the column and file. Nulls are refused naming the column, file and row, unless
``fill_defaults``, which fills them (and absent feature columns) with the contract's cold-start
defaults, the values the ranker sends for a missing feature.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from export.errors import ContractMismatchError, ExportError
from training.features import Feature, FeatureContract

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
MAX_INPUT_FILES = 100_000
_ARROW_WIRE = {"string": pa.string(), "int64": pa.int64(), "float32": pa.float32()}


def discover_inputs(paths: Sequence[str]) -> tuple[list[Path], str]:
    """The input files (sorted within each argument) and their format, "parquet" or "csv".

    Each argument is a file, a folder (its Parquet or CSV files, recursively; names starting
    with "." or "_" skipped, as Spark writes them) or a glob.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in PARQUET_SUFFIXES + CSV_SUFFIXES
            )
            found = [p for p in found if not any(part[0] in "._" for part in p.relative_to(path).parts)]
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(raw, recursive=True) if Path(p).is_file())
        if not found:
            raise ExportError(f"input {raw!r}: no Parquet or CSV file found")
        files.extend(found)
        if len(files) > MAX_INPUT_FILES:
            raise ExportError(f"more than {MAX_INPUT_FILES} input files; pass folders of larger files")
    kinds = {"csv" if f.suffix.lower() in CSV_SUFFIXES else "parquet" for f in files}
    if len(kinds) > 1:
        raise ExportError("inputs mix Parquet and CSV files; score them in separate runs")
    unknown = [f for f in files if f.suffix.lower() not in PARQUET_SUFFIXES + CSV_SUFFIXES]
    if unknown:
        raise ExportError(f"{unknown[0]}: not a .parquet, .pq or .csv file")
    return files, kinds.pop()


def _kind_ok(feature: Feature, kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if feature.dtype == "string":
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if feature.dtype == "int64":
        return pa.types.is_integer(kind) and kind != pa.uint64()
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def check_schema(
    contract: FeatureContract,
    schema: pa.Schema,
    *,
    source: str,
    passthrough: Sequence[str] = (),
    fill_defaults: bool = False,
) -> None:
    """Every feature (unless defaulted) and pass-through column present, each feature of its kind."""
    names = set(schema.names)
    missing = [f.name for f in contract.features if f.name not in names and not fill_defaults]
    missing += [c for c in passthrough if c not in names]
    if missing:
        raise ContractMismatchError(
            f"{source}: missing columns {missing} (have {sorted(names)}; "
            "--fill-defaults fills absent feature columns with the contract's defaults)"
        )
    for feature in contract.features:
        if feature.name in names:
            kind = schema.field(feature.name).type
            if not _kind_ok(feature, kind):
                raise ContractMismatchError(
                    f"{source}: column {feature.name!r} is {kind}, the contract wants {feature.dtype} "
                    f"({feature.kind.value})"
                )


def csv_read_options(contract: FeatureContract) -> pa_csv.ConvertOptions:
    """Feature columns read as their wire types (so "007" stays a string); an empty field is
    null in a numeric column and the empty string in a string one (a multi-valued feature's
    empty list)."""
    return pa_csv.ConvertOptions(
        column_types={f.name: _ARROW_WIRE[f.dtype] for f in contract.features},
        strings_can_be_null=False,
    )


def check_parquet_files(
    contract: FeatureContract, files: Sequence[Path], *, passthrough: Sequence[str], fill_defaults: bool
) -> int:
    """Check every file's schema and, from the footers' statistics, that no feature holds a null
    (the row is found by reading only that row group's column). Returns the total row count."""
    total = 0
    for path in files:
        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise ExportError(f"{path}: not a readable Parquet file: {exc}") from exc
        schema = meta.schema_arrow
        check_schema(contract, schema, source=str(path), passthrough=passthrough, fill_defaults=fill_defaults)
        if not fill_defaults:
            _refuse_nulls(contract, meta, path)
        total += meta.metadata.num_rows
    return total


def check_csv_files(
    contract: FeatureContract, files: Sequence[Path], *, passthrough: Sequence[str], fill_defaults: bool
) -> None:
    """Check every CSV file's header and the types of its first block (4 MiB) before any scoring."""
    for path in files:
        try:
            stream = pa_csv.open_csv(
                path,
                read_options=pa_csv.ReadOptions(block_size=1 << 22),
                convert_options=csv_read_options(contract),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise ContractMismatchError(f"{path}: {exc}") from exc
        check_schema(
            contract, stream.schema, source=str(path), passthrough=passthrough, fill_defaults=fill_defaults
        )


def _refuse_nulls(contract: FeatureContract, meta: pq.ParquetFile, path: Path) -> None:
    index = {meta.metadata.schema.column(i).path: i for i in range(meta.metadata.num_columns)}
    start = 0
    for group in range(meta.metadata.num_row_groups):
        row_group = meta.metadata.row_group(group)
        for feature in contract.features:
            column = index.get(feature.name)
            stats = row_group.column(column).statistics if column is not None else None
            if stats is not None and stats.has_null_count and stats.null_count == 0:
                continue
            values = meta.read_row_group(group, columns=[feature.name]).column(0)
            if values.null_count:
                row = start + int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
                raise ContractMismatchError(
                    f"{path}: column {feature.name!r}, row {row}: null ({values.null_count} in row group "
                    f"{group}); --fill-defaults fills nulls with the contract's default "
                    f"{feature.default!r}"
                )
        start += row_group.num_rows


def iter_batches(
    path: Path,
    fmt: str,
    contract: FeatureContract,
    *,
    columns: Sequence[str],
    batch_rows: int,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The file's ``columns`` (those present) in batches of at most ``batch_rows``: memory stays
    bounded whatever the file's size. ``row_groups`` limits a Parquet file to those row groups
    (a Spark task's split); a CSV file is always read whole."""
    if fmt == "parquet":
        # String features are read as dictionaries: ids repeat, and a dictionary's values become
        # Python bytes once per distinct value instead of once per row (wire_inputs)
        metadata = pq.read_metadata(path)  # one footer read, reused below
        names = set(metadata.schema.to_arrow_schema().names)
        strings = [f.name for f in contract.features if f.dtype == "string" and f.name in names]
        reader = pq.ParquetFile(path, metadata=metadata, read_dictionary=strings)
        present = [c for c in columns if c in reader.schema_arrow.names]
        yield from reader.iter_batches(batch_size=batch_rows, columns=present, row_groups=row_groups)
        return
    try:
        stream = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=1 << 22),
            convert_options=csv_read_options(contract),
        )
        check_schema(contract, stream.schema, source=str(path), passthrough=(), fill_defaults=True)
        for batch in stream:
            present = [c for c in columns if c in batch.schema.names]
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.select(present).slice(start, batch_rows)
    except pa.ArrowInvalid as exc:
        raise ContractMismatchError(f"{path}: {exc}") from exc


def _dictionary_strings(column: pa.DictionaryArray, feature: Feature, where: str) -> np.ndarray:
    """A dictionary-encoded string column as an object array of bytes, each distinct value one
    Python object shared by its rows (numpy indexing, no per-row conversion)."""
    if not (pa.types.is_string(column.type.value_type) or pa.types.is_large_string(column.type.value_type)):
        raise ContractMismatchError(
            f"{where}: column {feature.name!r} is {column.type}, the contract wants string"
        )
    values = column.dictionary.cast(pa.binary()).to_numpy(zero_copy_only=False)
    return values[column.indices.to_numpy(zero_copy_only=False)]


def wire_inputs(
    contract: FeatureContract,
    batch: pa.RecordBatch | pa.Table,
    *,
    fill_defaults: bool,
    where: str,
    first_row: int,
) -> dict[str, np.ndarray]:
    """Contract columns of ``batch`` as wire-dtype numpy arrays (strings as UTF-8 bytes)."""
    out: dict[str, np.ndarray] = {}
    names = batch.schema.names
    for feature in contract.features:
        wire = _ARROW_WIRE[feature.dtype]
        if feature.name not in names:
            if not fill_defaults:
                raise ContractMismatchError(f"{where}: missing column {feature.name!r}")
            column: pa.Array = pa.array(np.full(batch.num_rows, feature.default), type=wire)
        else:
            column = batch.column(names.index(feature.name))
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            if feature.dtype == "string" and pa.types.is_dictionary(column.type) and not column.null_count:
                out[feature.name] = _dictionary_strings(column, feature, where)
                continue
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            column = column.cast(wire, safe=feature.dtype != "float32")
            if column.null_count:
                if not fill_defaults:
                    row = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
                    raise ContractMismatchError(
                        f"{where}: column {feature.name!r}, row {row}: null; --fill-defaults fills nulls "
                        f"with the contract's default {feature.default!r}"
                    )
                column = pc.fill_null(column, pa.scalar(feature.default, type=wire))
        if feature.dtype == "string":
            out[feature.name] = column.cast(pa.binary()).to_numpy(zero_copy_only=False)
        else:
            out[feature.name] = column.to_numpy(zero_copy_only=False)
    return out

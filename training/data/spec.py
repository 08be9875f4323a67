"""The dataset spec: a YAML declaration of the user's own logs, validated with errors located by line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .base import DataError
from .cold_start import DEFAULT_COLD_START_ROWS
from .splits import SplitSpec

SPEC_SUFFIXES = (".yaml", ".yml")
MAX_SPEC_BYTES = 1 << 20
# Feature names travel as TF Serving input names and JSON keys: keep them plain identifiers.
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Columns every Splits frame has under these names; a feature may not take one for another meaning.
RESERVED = ("label", "p_true", "user_id", "item_id", "timestamp")


def is_spec_path(source: str) -> bool:
    """True when a ``--data`` value names a spec file rather than a built-in source."""
    return str(source).lower().endswith(SPEC_SUFFIXES)


def _check_column(name: str) -> str:
    if not COLUMN_NAME.match(name):
        raise ValueError(f"column name {name!r} must match {COLUMN_NAME.pattern}")
    return name


class FeatureSpec(BaseModel):
    """One model input read from a column of the same name; unset fields are inferred or defaulted.

    ``kind`` defaults from the column's dtype: strings and integers are ``categorical``,
    floats ``numeric``; a ``separator`` alone makes it ``multi_categorical``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["categorical", "multi_categorical", "numeric"] | None = None
    entity: Literal["user", "item", "context"] | None = None
    separator: str | None = Field(default=None, min_length=1, max_length=8)
    min_count: int | None = Field(default=None, ge=1)
    max_vocab: int | None = Field(default=None, ge=1, le=10_000_000)
    hash_buckets: int | None = Field(default=None, ge=1, le=1 << 24)
    num_oov: int = Field(default=1, ge=1, le=1024)
    embedding_dim: int | None = Field(default=None, ge=1, le=1024)
    transform: Literal["none", "log1p"] | None = None
    max_len: int | None = Field(default=None, ge=1, le=1024)

    @model_validator(mode="after")
    def _fits_kind(self) -> FeatureSpec:
        kind = self.kind
        if kind == "numeric":
            wrong = [
                k
                for k in ("separator", "min_count", "max_vocab", "hash_buckets", "max_len")
                if getattr(self, k)
            ]
            if wrong:
                raise ValueError(f"{wrong} do not apply to a numeric feature")
        if kind in ("categorical", "multi_categorical") and self.transform not in (None, "none"):
            raise ValueError("transform applies to numeric features only")
        if kind == "categorical" and (self.separator or self.max_len):
            raise ValueError("separator/max_len apply to multi_categorical features only")
        if kind == "multi_categorical" and self.hash_buckets:
            raise ValueError("hash_buckets is not supported for multi_categorical features")
        if self.hash_buckets and self.min_count:
            raise ValueError("give min_count (vocabulary) or hash_buckets, not both")
        return self


class Defaults(BaseModel):
    """Values every feature takes unless it states its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_count: int = Field(default=1, ge=1)
    max_vocab: int = Field(default=100_000, ge=1, le=10_000_000)
    embedding_dim: int = Field(default=8, ge=1, le=1024)
    # copies of each user's and item's first training events with the id blanked (cold_start.py)
    cold_start_rows: int = Field(default=DEFAULT_COLD_START_ROWS, ge=0, le=100)


class HistorySpec(BaseModel):
    """A behaviour-sequence feature derived from the log itself: each row's earlier clicks.

    Each row gets the items its user clicked (label 1) strictly before the row's timestamp,
    newest first, at most ``max_len`` (``training.data.history``). Clicks, not every event,
    because that is what the ranker knows and fills at request time. The sequence shares the
    item column's vocabulary and embedding table, as the DIN model (``--model din``) needs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "history"
    max_len: int = Field(default=20, ge=1, le=1024)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_column(value)


class DatasetSpec(BaseModel):
    """A data set of the user's own logs: files, the key columns, features and the split.

    ``files`` are glob patterns relative to the spec file's folder (Parquet or CSV, by suffix
    unless ``format`` says). ``user`` and ``item`` columns are always categorical features
    (entity user/item); list them under ``features`` only to change their options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="custom", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    files: list[str] = Field(min_length=1, max_length=100)
    format: Literal["auto", "parquet", "csv"] = "auto"
    csv_separator: str = Field(default=",", min_length=1, max_length=1)
    label: str
    timestamp: str | None = None
    user: str
    item: str
    features: dict[str, FeatureSpec | None] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    split: SplitSpec = Field(default_factory=SplitSpec)
    history: HistorySpec | None = None

    @field_validator("files", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("label", "timestamp", "user", "item")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else _check_column(value)

    @field_validator("features")
    @classmethod
    def _feature_names(cls, value: dict[str, FeatureSpec | None]) -> dict[str, FeatureSpec | None]:
        for name in value:
            _check_column(name)
        return value

    @model_validator(mode="after")
    def _keys_fit(self) -> DatasetSpec:
        if self.split.kind in ("global", "per-user") and self.timestamp is None:
            raise ValueError(f"a {self.split.kind} split needs a timestamp column")
        if self.user == self.item:
            raise ValueError("user and item must be different columns")
        for name in self.features:
            if name in (self.label, self.timestamp):
                raise ValueError(f"feature {name!r} is the label or timestamp column")
            if name in RESERVED and name not in (self.user, self.item):
                raise ValueError(f"feature name {name!r} is reserved ({', '.join(RESERVED)})")
        if self.history is not None:
            taken = {self.label, self.timestamp, self.user, self.item, *self.features, *RESERVED}
            if self.timestamp is None:
                raise ValueError("history needs a timestamp column (it takes strictly earlier clicks)")
            if self.history.name in taken:
                raise ValueError(f"history name {self.history.name!r} is already a column or feature")
        for key, column in (("user", self.user), ("item", self.item)):
            options = self.features.get(column)
            if options is not None and options.kind not in (None, "categorical"):
                raise ValueError(f"the {key} column {column!r} is categorical, not {options.kind}")
        return self


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at pydantic location ``loc`` (the deepest that exists)."""
    node = root
    if node is None:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(part)), None)
            if found is None:
                break
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


def _locate(path: Path, root: yaml.Node | None, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        # drop pydantic's union branch names (``FeatureSpec``) from the shown location
        loc = tuple(
            p for p in item["loc"] if p not in ("FeatureSpec", "none", "function-after[_fits_kind()]")
        )
        line = _line_of(root, loc)
        where = ".".join(str(p) for p in loc) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{path}: line {line}: {where}: {message}" if line else f"{path}: {where}: {message}")
    return "; ".join(lines)


def read_spec(path: str | Path) -> DatasetSpec:
    """Parse and validate a spec file; every problem is a DataError naming the file, line and key."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"{source}: dataset spec not found")
    if source.stat().st_size > MAX_SPEC_BYTES:
        raise DataError(f"{source}: dataset spec is larger than {MAX_SPEC_BYTES} bytes")
    text = source.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{source}: a dataset spec is a mapping, got {type(data).__name__}")
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as exc:
        raise DataError(_locate(source, root, exc)) from None

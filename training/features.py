"""The feature contract: one typed, immutable declaration of every model input."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from training.atomic_files import atomic_write_text

CONTRACT_FILENAME = "feature_contract.json"
CONTRACT_VERSION = 1
MULTI_VALUE_SEPARATOR = "|"
# In-graph transforms of a numeric feature's raw value, applied before (x - mean) / std.
# "log1p" is t(x) = sign(x) * log1p(|x|): it tames heavy tails (prices, counts) inside the
# served graph, so clients always send raw values and never have to replicate it.
NUMERIC_TRANSFORMS: tuple[str, ...] = ("none", "log1p")
# log1p of the largest float32: a log1p feature's mean beyond it has no raw float32 default.
_MAX_LOG1P_FLOAT32 = math.log1p(3.4028234663852886e38)


class FeatureKind(StrEnum):
    """How a raw input is turned into model input inside the graph."""

    CATEGORICAL_STRING = "categorical_string"
    CATEGORICAL_INT = "categorical_int"
    NUMERIC = "numeric"
    MULTI_CATEGORICAL = "multi_categorical"
    # An ordered list of recent item ids (most recent first), embedded with the table of the
    # single-valued feature named by ``item_feature`` so history and candidate share vectors.
    SEQUENCE = "sequence"


class Entity(StrEnum):
    """Which side of a request a feature comes from (drives the client's feature join)."""

    USER = "user"
    ITEM = "item"
    CONTEXT = "context"


# Wire dtype of each kind. Every input is a rank-1 tensor of shape [batch]; a multi-valued
# feature travels as one string per row, values joined by MULTI_VALUE_SEPARATOR, and is split
# inside the graph so clients and REST bodies never deal with ragged tensors.
KIND_DTYPE: dict[FeatureKind, str] = {
    FeatureKind.CATEGORICAL_STRING: "string",
    FeatureKind.CATEGORICAL_INT: "int64",
    FeatureKind.NUMERIC: "float32",
    FeatureKind.MULTI_CATEGORICAL: "string",
    FeatureKind.SEQUENCE: "string",
}
MULTI_VALUED_KINDS = (FeatureKind.MULTI_CATEGORICAL, FeatureKind.SEQUENCE)


class ContractError(ValueError):
    """A feature declaration, a contract file or a batch does not satisfy the contract."""


@dataclass(frozen=True)
class Feature:
    """One model input.

    Categorical features use either a ``vocabulary`` (with ``num_oov`` out-of-vocabulary
    buckets, at least one) or ``hash_buckets``; numeric features carry the ``mean``/``std``
    used to normalise them in the graph. ``default`` is what the client sends when a value
    is missing (cold start), so it must be a value of the feature's dtype.

    A numeric feature's ``transform`` (``NUMERIC_TRANSFORMS``) is applied to the raw value in
    the graph before normalisation; ``mean``/``std`` are statistics of the transformed value,
    while ``default`` stays a raw value. For ``"log1p"`` the natural default is the raw value
    whose transform is the mean, ``sign(mean) * expm1(|mean|)``.
    """

    name: str
    kind: FeatureKind
    entity: Entity
    vocabulary: tuple[str, ...] | tuple[int, ...] | None = None
    hash_buckets: int | None = None
    num_oov: int = 1
    embedding_dim: int = 8
    mean: float = 0.0
    std: float = 1.0
    max_len: int = 0
    default: str | int | float | None = None
    transform: str = "none"
    item_feature: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FeatureKind(self.kind))
        object.__setattr__(self, "entity", Entity(self.entity))
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ContractError(f"feature name {self.name!r} must be non-empty [A-Za-z0-9_]")
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        self._check_transform()
        if self.default is None:
            object.__setattr__(self, "default", self._natural_default())
        self._check()

    def _check_transform(self) -> None:
        where = f"feature {self.name!r}"
        if not isinstance(self.transform, str) or self.transform not in NUMERIC_TRANSFORMS:
            raise ContractError(
                f"{where}: transform must be one of {list(NUMERIC_TRANSFORMS)}, got {self.transform!r}"
            )
        if self.transform != "none" and self.kind is not FeatureKind.NUMERIC:
            raise ContractError(
                f"{where}: transform {self.transform!r} applies to numeric features only, not {self.kind.value}"
            )
        if self.transform == "log1p" and not (
            isinstance(self.mean, (int, float)) and abs(self.mean) <= _MAX_LOG1P_FLOAT32
        ):
            raise ContractError(
                f"{where}: a log1p feature's mean must lie within +-{_MAX_LOG1P_FLOAT32:.4f} "
                f"(log1p of the largest float32), got {self.mean!r}"
            )

    def _natural_default(self) -> str | int | float:
        if self.kind is FeatureKind.NUMERIC:
            if self.transform == "log1p":
                return math.copysign(math.expm1(abs(self.mean)), self.mean)
            return float(self.mean)
        if self.kind is FeatureKind.CATEGORICAL_INT:
            return -1
        return ""

    def _check(self) -> None:
        where = f"feature {self.name!r}"
        if self.kind is FeatureKind.NUMERIC:
            if self.vocabulary is not None or self.hash_buckets is not None:
                raise ContractError(f"{where}: numeric features take no vocabulary or hash buckets")
            if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
                raise ContractError(f"{where}: needs finite mean and std > 0, got {self.mean}, {self.std}")
            if not isinstance(self.default, (int, float)) or isinstance(self.default, bool):
                raise ContractError(f"{where}: default must be a number, got {self.default!r}")
            return
        if (self.vocabulary is None) == (self.hash_buckets is None):
            raise ContractError(f"{where}: give exactly one of vocabulary or hash_buckets")
        if self.hash_buckets is not None and self.hash_buckets < 1:
            raise ContractError(f"{where}: hash_buckets must be >= 1, got {self.hash_buckets}")
        if self.vocabulary is not None:
            if self.num_oov < 1:
                raise ContractError(f"{where}: num_oov must be >= 1 so unseen values never fail")
            if len(set(self.vocabulary)) != len(self.vocabulary):
                raise ContractError(f"{where}: vocabulary has duplicates")
            want = int if self.kind is FeatureKind.CATEGORICAL_INT else str
            bad = [v for v in self.vocabulary if not isinstance(v, want) or isinstance(v, bool)]
            if bad:
                raise ContractError(f"{where}: vocabulary values must be {want.__name__}, got {bad[:3]!r}")
            if want is str and "" in self.vocabulary:
                raise ContractError(f"{where}: the empty string is reserved for missing values")
        if self.embedding_dim < 1:
            raise ContractError(f"{where}: embedding_dim must be >= 1")
        if self.kind in MULTI_VALUED_KINDS and self.max_len < 1:
            raise ContractError(f"{where}: multi-valued features need max_len >= 1")
        if (self.kind is FeatureKind.SEQUENCE) != (self.item_feature is not None):
            raise ContractError(f"{where}: item_feature is required for sequence features and only for them")
        if self.kind is FeatureKind.CATEGORICAL_INT:
            if not isinstance(self.default, int) or isinstance(self.default, bool):
                raise ContractError(f"{where}: default must be an int, got {self.default!r}")
        elif not isinstance(self.default, str):
            raise ContractError(f"{where}: default must be a string, got {self.default!r}")

    @property
    def dtype(self) -> str:
        """Wire dtype: ``string``, ``int64`` or ``float32`` (shape is always [batch])."""
        return KIND_DTYPE[self.kind]

    @property
    def is_multi_valued(self) -> bool:
        """Multi-categorical or sequence: a ``|``-joined string split to ``[batch, max_len]`` ids."""
        return self.kind in MULTI_VALUED_KINDS

    @property
    def is_categorical(self) -> bool:
        return self.kind is not FeatureKind.NUMERIC

    @property
    def num_buckets(self) -> int:
        """Number of embedding rows: hash buckets, or vocabulary plus OOV buckets."""
        if self.kind is FeatureKind.NUMERIC:
            raise ContractError(f"feature {self.name!r} is numeric and has no buckets")
        if self.hash_buckets is not None:
            return self.hash_buckets
        assert self.vocabulary is not None
        return len(self.vocabulary) + self.num_oov

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["entity"] = self.entity.value
        out["vocabulary"] = list(self.vocabulary) if self.vocabulary is not None else None
        if self.item_feature is None:
            del out["item_feature"]  # contracts without sequences keep their exact JSON
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ContractError(f"feature {data.get('name')!r}: unknown keys {sorted(unknown)}")
        kwargs = dict(data)
        if kwargs.get("vocabulary") is not None:
            kwargs["vocabulary"] = tuple(kwargs["vocabulary"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ContractError(f"feature {data.get('name')!r}: {exc}") from exc


@dataclass(frozen=True)
class FeatureContract:
    """Every model input, in signature order, plus the label column's name."""

    features: tuple[Feature, ...]
    label: str = "label"
    metadata: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "metadata", tuple(tuple(kv) for kv in self.metadata))
        if not self.features:
            raise ContractError("a feature contract needs at least one feature")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ContractError(f"duplicate feature names: {dupes}")
        if self.label in names:
            raise ContractError(f"label {self.label!r} cannot also be a feature")
        for feature in self.features:
            if feature.item_feature is not None:
                _check_shared_table(feature, self)

    @property
    def sequences(self) -> tuple[Feature, ...]:
        """The sequence features, each embedded with its ``item_feature``'s table."""
        return self.by_kind(FeatureKind.SEQUENCE)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def __getitem__(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"no feature {name!r} in the contract (have {list(self.names)})")

    def by_entity(self, entity: Entity | str) -> tuple[Feature, ...]:
        entity = Entity(entity)
        return tuple(f for f in self.features if f.entity is entity)

    def by_kind(self, *kinds: FeatureKind) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind in kinds)

    def signature_spec(self) -> dict[str, str]:
        """Input name -> wire dtype, in signature order; every input has shape [None]."""
        return {f.name: f.dtype for f in self.features}

    def to_dict(self) -> dict[str, Any]:
        return {
            "contract_version": CONTRACT_VERSION,
            "label": self.label,
            "metadata": dict(self.metadata),
            "features": [f.to_dict() for f in self.features],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureContract:
        version = data.get("contract_version")
        if version != CONTRACT_VERSION:
            raise ContractError(f"unsupported contract_version {version!r} (expected {CONTRACT_VERSION})")
        if not isinstance(data.get("features"), list):
            raise ContractError("contract JSON needs a 'features' list")
        return cls(
            features=tuple(Feature.from_dict(f) for f in data["features"]),
            label=str(data.get("label", "label")),
            metadata=tuple(sorted((str(k), str(v)) for k, v in dict(data.get("metadata", {})).items())),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureContract:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"feature contract is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temporary file + rename); a directory gets CONTRACT_FILENAME."""
        target = Path(path)
        if target.is_dir():
            target = target / CONTRACT_FILENAME
        atomic_write_text(target, self.to_json() + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureContract:
        source = Path(path)
        if source.is_dir():
            source = source / CONTRACT_FILENAME
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ContractError(f"cannot read feature contract {source}: {exc}") from exc
        try:
            return cls.from_json(text)
        except ContractError as exc:
            raise ContractError(f"{source}: {exc}") from exc

    def validate_columns(self, columns: Iterable[str], *, source: str = "data") -> None:
        """Raise naming every contract feature missing from ``columns``."""
        have = set(columns)
        missing = [n for n in self.names if n not in have]
        if missing:
            raise ContractError(f"{source}: missing feature columns {missing}")


def _check_shared_table(sequence: Feature, contract: FeatureContract) -> None:
    """A sequence must map ids exactly like its item feature, or sharing one table is wrong."""
    where = f"feature {sequence.name!r}"
    target = next((f for f in contract.features if f.name == sequence.item_feature), None)
    if target is None:
        raise ContractError(f"{where}: item_feature {sequence.item_feature!r} is not in the contract")
    if target.kind not in (FeatureKind.CATEGORICAL_STRING, FeatureKind.CATEGORICAL_INT):
        raise ContractError(
            f"{where}: item_feature {target.name!r} must be single-valued categorical, not {target.kind.value}"
        )
    mine = (sequence.vocabulary, sequence.hash_buckets, sequence.num_oov, sequence.embedding_dim)
    theirs = (target.vocabulary, target.hash_buckets, target.num_oov, target.embedding_dim)
    if target.kind is FeatureKind.CATEGORICAL_INT and target.vocabulary is not None:
        theirs = (tuple(str(v) for v in target.vocabulary), *theirs[1:])
    if mine != theirs:
        raise ContractError(
            f"{where}: vocabulary, hash_buckets, num_oov and embedding_dim must equal those of "
            f"item_feature {target.name!r} (they share one embedding table)"
        )


def join_multi(values: Sequence[str]) -> str:
    """Encode a multi-valued categorical the way the serving signature takes it."""
    bad = [v for v in values if MULTI_VALUE_SEPARATOR in v]
    if bad:
        raise ContractError(f"multi-valued entries cannot contain {MULTI_VALUE_SEPARATOR!r}: {bad[:3]}")
    return MULTI_VALUE_SEPARATOR.join(values)

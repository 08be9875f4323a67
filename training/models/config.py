"""Hyper-parameters of the model zoo, as one frozen, JSON-round-trippable object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

DCN_STRUCTURES = ("stacked", "parallel")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture knobs shared by every model; each model reads the ones it uses.

    Attributes:
        embedding_dim: Overrides every categorical feature's ``embedding_dim``. FM and DeepFM need
            one dimension across fields, so they require it when the contract's dims differ.
        hidden_units: Widths of the deep tower (Wide&Deep, DeepFM, DCNv2); empty means no tower.
        activation: Keras activation name of the deep tower.
        dropout: Dropout rate after each hidden layer, in ``[0, 1)``.
        num_cross_layers: DCNv2 cross layers.
        low_rank: DCNv2 cross-layer rank; ``None`` means full-rank ``[dim, dim]`` kernels.
        dcn_structure: ``stacked`` (cross -> deep) or ``parallel`` (cross || deep, concatenated).
        l2: L2 penalty on embeddings and kernels (0 disables).
        embeddings_scale: Half-width of the uniform initialiser of embeddings.
    """

    embedding_dim: int | None = None
    hidden_units: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    dropout: float = 0.0
    num_cross_layers: int = 2
    low_rank: int | None = None
    dcn_structure: str = "stacked"
    l2: float = 0.0
    embeddings_scale: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))
        problems = []
        if self.embedding_dim is not None and self.embedding_dim < 1:
            problems.append(f"embedding_dim must be None or >= 1, got {self.embedding_dim}")
        if any(u < 1 for u in self.hidden_units):
            problems.append(f"hidden_units must all be >= 1, got {list(self.hidden_units)}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_cross_layers < 1:
            problems.append(f"num_cross_layers must be >= 1, got {self.num_cross_layers}")
        if self.low_rank is not None and self.low_rank < 1:
            problems.append(f"low_rank must be None or >= 1, got {self.low_rank}")
        if self.dcn_structure not in DCN_STRUCTURES:
            problems.append(f"dcn_structure must be one of {DCN_STRUCTURES}, got {self.dcn_structure!r}")
        if self.l2 < 0:
            problems.append(f"l2 must be >= 0, got {self.l2}")
        if self.embeddings_scale <= 0:
            problems.append(f"embeddings_scale must be > 0, got {self.embeddings_scale}")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hidden_units"] = list(self.hidden_units)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ModelConfig: unknown keys {unknown} (known: {sorted(known)})")
        kwargs = dict(data)
        if "hidden_units" in kwargs:
            kwargs["hidden_units"] = tuple(kwargs["hidden_units"])
        return cls(**kwargs)

"""The simulated A/B's one config object (small defaults so it runs in a few minutes on 2 cores)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The planted skew: the canary's training table holds price in hundreds of dollars (a cents ->
# dollars conversion applied to a column already in dollars), while the ranker's item store,
# like the stable model's training data, holds dollars. Only the canary arm sees it.
PLANTED_FEATURE = "price"
# recsys-export verify's Keras parity check needs 10,000 held-out rows: 20% of the events
MIN_ROWS = 50_000


@dataclass(frozen=True)
class ABConfig:
    """Everything one simulated A/B needs.

    Attributes:
        out: working folder (data, runs, exports, logs, reports); re-running reuses finished steps.
        rows: synthetic events generated (both models train on them).
        seed: data, model and traffic seed (the traffic Generator is ``default_rng(seed)``).
        stable_epochs, canary_epochs: the canary trains longer, so it wins offline AUC.
        canary_price_scale: the planted unit error of the canary's training table (price x this).
        requests: simulated /recommend calls.
        list_size: candidates per request; all of them are served (k = list_size), ranked, so the
            served features are the world's exposure distribution and only ranking differs by arm.
        canary_share: traffic share of the canary arm.
        model_name: the one model name; stable is version 1, canary version 2 (TF Serving labels).
    """

    out: Path
    rows: int = 200_000
    seed: int = 0
    stable_epochs: int = 2
    canary_epochs: int = 3
    canary_price_scale: float = 0.01
    requests: int = 2_000
    list_size: int = 20
    canary_share: float = 0.5
    model_name: str = "ctr"

    def __post_init__(self) -> None:
        if not 0.0 < self.canary_share < 1.0:
            raise ValueError(f"canary_share must be in (0, 1), got {self.canary_share}")
        if self.requests < 1 or self.list_size < 2 or self.rows < MIN_ROWS:
            raise ValueError(
                f"need requests >= 1, list_size >= 2, rows >= {MIN_ROWS}; got {self.requests}, "
                f"{self.list_size}, {self.rows}"
            )
        if self.canary_price_scale <= 0:
            raise ValueError(f"canary_price_scale must be > 0, got {self.canary_price_scale}")

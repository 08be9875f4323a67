"""Train/valid/test splits: global time, per-user time (last events held out) and seeded random."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import DataError, Splits, check_fractions, time_split
from .cold_start import with_cold_start_rows
from .contracts import FeatureRecipe, contract_from_recipes, fill_numeric_defaults

SplitKind = Literal["global", "per-user", "random"]
SPLIT_KINDS: tuple[str, ...] = ("global", "per-user", "random")
# Per-user default as the field reports it: each user's last 20% to test, the 10% before to valid.
PER_USER_FRACTIONS = (0.1, 0.2)
GLOBAL_FRACTIONS = (0.1, 0.1)


class SplitSpec(BaseModel):
    """How rows are cut into train/valid/test.

    ``global``: sorted by time, the latest ``test`` share to test and the ``valid`` share before
    it to validation (ties never straddle a cut). ``per-user``: the same inside each user's own
    events (stable sort, so equal timestamps keep file order); ``test_last_n``/``valid_last_n``
    replace the fractions by counts. ``random``: a seeded permutation. Omitted fractions take
    the kind's default (global and random 10%/10%, per-user 10%/20%).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SplitKind = "global"
    valid: float | None = Field(default=None, gt=0, lt=1)
    test: float | None = Field(default=None, gt=0, lt=1)
    valid_last_n: int | None = Field(default=None, ge=0)
    test_last_n: int | None = Field(default=None, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> SplitSpec:
        counts = self.valid_last_n is not None or self.test_last_n is not None
        if counts and self.kind != "per-user":
            raise ValueError("valid_last_n/test_last_n apply to the per-user split only")
        if counts and (self.valid is not None or self.test is not None):
            raise ValueError("give fractions (valid, test) or counts (valid_last_n, test_last_n), not both")
        if counts and self.test_last_n is None:
            raise ValueError("valid_last_n needs test_last_n")
        if not counts:
            check_fractions(self.fractions())
        return self

    def fractions(self) -> tuple[float, float, float]:
        """(train, valid, test) shares; for per-user counts, not meaningful."""
        default_valid, default_test = PER_USER_FRACTIONS if self.kind == "per-user" else GLOBAL_FRACTIONS
        valid = default_valid if self.valid is None else self.valid
        test = default_test if self.test is None else self.test
        return (1.0 - valid - test, valid, test)

    def describe(self) -> str:
        """One phrase for reports, e.g. ``per-user time split (last 20% of each user's events to test, ...)``."""
        if self.kind == "per-user" and self.test_last_n is not None:
            return (
                f"per-user time split (each user's last {self.test_last_n} events to test, "
                f"the {self.valid_last_n or 0} before to validation)"
            )
        _, valid, test = self.fractions()
        if self.kind == "per-user":
            return (
                f"per-user time split (last {test:.0%} of each user's events to test, "
                f"the {valid:.0%} before to validation)"
            )
        if self.kind == "random":
            return f"random split (seed {self.seed}: {valid:.0%} validation, {test:.0%} test)"
        return (
            f"global time split (latest {test:.0%} of events to test, the {valid:.0%} before to validation)"
        )


Parts = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def _take(frame: pd.DataFrame, part: np.ndarray) -> pd.DataFrame:
    return frame.iloc[np.flatnonzero(part)].reset_index(drop=True)


def per_user_counts(n: int, spec: SplitSpec) -> tuple[int, int]:
    """(valid, test) events held out of a user with ``n`` events; train keeps at least one.

    Fractions round down but hold out at least one event each once the user has three
    (RecBole's rule), so a user with 20 events gives 2 to valid and 4 to test at 10%/20%.
    """
    if spec.test_last_n is not None:
        test, valid = spec.test_last_n, spec.valid_last_n or 0
    else:
        _, valid_f, test_f = spec.fractions()
        test = max(1, math.floor(n * test_f + 1e-9))
        valid = max(1, math.floor(n * valid_f + 1e-9))
    test = min(test, max(n - 1, 0))
    valid = min(valid, max(n - 1 - test, 0))
    return valid, test


def per_user_split(
    frame: pd.DataFrame, spec: SplitSpec, *, user_column: str = "user_id", time_column: str = "timestamp"
) -> Parts:
    """Each user's last events (by time; ties in frame order) to test, the ones before to valid.

    Every user with at least two events stays in train, so this split measures ranking for known
    users; rows keep their relative order inside each part.
    """
    for column in (user_column, time_column):
        if column not in frame.columns:
            raise DataError(f"cannot split per user: no column {column!r}")
    if len(frame) < 3:
        raise DataError(f"need at least 3 rows to split into train/valid/test, got {len(frame)}")
    users = pd.factorize(frame[user_column])[0]
    # stable: by user, then time, then position in the frame (file order)
    order = np.lexsort((np.arange(len(frame)), frame[time_column].to_numpy(), users))
    sizes = np.bincount(users)
    # rank from the end inside each user: 0 for the user's last event
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    sorted_users = users[order]
    from_end = np.empty(len(frame), dtype=np.int64)
    from_end[order] = sizes[sorted_users] - 1 - (np.arange(len(frame)) - starts[sorted_users])
    counts = np.array([per_user_counts(int(n), spec) for n in sizes], dtype=np.int64).reshape(-1, 2)
    valid_n, test_n = counts[users, 0], counts[users, 1]
    test = from_end < test_n
    valid = ~test & (from_end < test_n + valid_n)
    train = ~test & ~valid
    if not (train.any() and valid.any() and test.any()):
        raise DataError(
            f"per-user split of {len(frame)} rows left a part empty "
            f"(train {int(train.sum())}, valid {int(valid.sum())}, test {int(test.sum())})"
        )
    return _take(frame, train), _take(frame, valid), _take(frame, test)


def random_split(
    frame: pd.DataFrame, fractions: tuple[float, float, float], rng: np.random.Generator
) -> Parts:
    """A seeded permutation cut by ``fractions``; each part keeps the frame's row order."""
    train_f, valid_f, _ = check_fractions(fractions)
    n = len(frame)
    if n < 3:
        raise DataError(f"need at least 3 rows to split into train/valid/test, got {n}")
    first = min(max(round(n * train_f), 1), n - 2)
    second = min(max(round(n * (train_f + valid_f)), first + 1), n - 1)
    rank = np.empty(n, dtype=np.int64)
    rank[rng.permutation(n)] = np.arange(n)
    return (
        _take(frame, rank < first),
        _take(frame, (rank >= first) & (rank < second)),
        _take(frame, rank >= second),
    )


def apply_split(
    frame: pd.DataFrame,
    spec: SplitSpec,
    *,
    user_column: str = "user_id",
    time_column: str = "timestamp",
    rng: np.random.Generator | None = None,
) -> Parts:
    """Cut ``frame`` as ``spec`` says; the random split draws from ``rng`` (default: ``spec.seed``)."""
    if spec.kind == "per-user":
        return per_user_split(frame, spec, user_column=user_column, time_column=time_column)
    if spec.kind == "random":
        return random_split(frame, spec.fractions(), rng or np.random.default_rng(spec.seed))
    return time_split(frame, spec.fractions(), time_column=time_column)


def cold_shares(
    train: pd.DataFrame, test: pd.DataFrame, *, user_column: str = "user_id", item_column: str = "item_id"
) -> dict[str, float | int]:
    """Share of ``test`` rows whose user (item, either) never occurs in ``train``.

    A split whose test rows are mostly cold users measures cold start, not ranking; reports
    state these shares so the numbers are read for what they are.
    """
    out: dict[str, float | int] = {"test_rows": len(test)}
    cold = np.zeros(len(test), dtype=bool)
    for name, column in (("user", user_column), ("item", item_column)):
        if column in test.columns and column in train.columns:
            mask = ~test[column].isin(set(train[column])).to_numpy()
            out[f"cold_{name}_share"] = float(mask.mean()) if len(test) else 0.0
            cold |= mask
    out["cold_any_share"] = float(cold.mean()) if len(test) else 0.0
    return out


def split_spec_with(spec: SplitSpec, split: str | SplitSpec | None) -> SplitSpec:
    """``split`` (a kind name from ``--split``, or a whole SplitSpec) over the spec's own split."""
    if split is None:
        return spec
    if isinstance(split, SplitSpec):
        return split
    if split not in SPLIT_KINDS:
        raise DataError(f"split must be one of {', '.join(SPLIT_KINDS)}, got {split!r}")
    if split == spec.kind:
        return spec
    return SplitSpec(kind=split, seed=spec.seed)  # type: ignore[arg-type]


def build_splits(
    name: str,
    frame: pd.DataFrame,
    recipes: Sequence[FeatureRecipe],
    split: SplitSpec,
    *,
    source: str,
    id_columns: Sequence[str] = (),
    cold_start_rows: int = 0,
) -> Splits:
    """Cut ``frame``, build the contract from the training part only, fill missing numerics.

    With ``cold_start_rows`` > 0 the training part then gets that many copies of each id's first
    events with the id blanked (``cold_start.with_cold_start_rows``), so the OOV rows train.
    """
    train, valid, test = apply_split(frame, split)
    contract = contract_from_recipes(train, recipes, source=source)
    # a hashed id has no OOV row (a new id lands in some id's bucket): copies would teach nothing
    with_vocabulary = [c for c in id_columns if contract[c].vocabulary is not None]
    train = with_cold_start_rows(train, with_vocabulary, cold_start_rows)
    parts = [fill_numeric_defaults(part, contract) for part in (train, valid, test)]
    return Splits(name, contract, *parts, split=split.describe())


def split_summary(splits: Splits, frame: pd.DataFrame) -> dict[str, float | int | str]:
    """What an evaluation report states about its data: how it was split, how cold ``frame`` is."""
    return {"split_kind": splits.split, **cold_shares(splits.train, frame)}


def split_note(data: dict) -> str:
    """``(per-user time split (...); 0.0% of rows with a new user, 0.6% with a new item)`` or ``""``."""
    if "split_kind" not in data:
        return ""
    shares = [
        f"{data[key]:.1%} of rows with a new {what}"
        for key, what in (("cold_user_share", "user"), ("cold_item_share", "item"))
        if key in data
    ]
    return f" ({'; '.join([data['split_kind'], *shares])})"

"""Criteo display-ads TSV (label, I1-I13, C1-C26): a strict loader and a synthetic writer of the format."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training.atomic_files import atomic_path
from training.features import Entity, FeatureContract

from .base import (
    DEFAULT_FRACTIONS,
    DataError,
    Splits,
    check_fractions,
    parse_numeric,
)
from .contracts import FeatureRecipe, contract_from_recipes, signed_log1p
from .text_tables import read_delimited

INT_COLUMNS: tuple[str, ...] = tuple(f"I{i}" for i in range(1, 14))
CAT_COLUMNS: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))
COLUMNS: tuple[str, ...] = ("label", *INT_COLUMNS, *CAT_COLUMNS)


def read_criteo_tsv(path: str | os.PathLike[str], *, max_rows: int | None = None) -> pd.DataFrame:
    """Parse a Criteo TSV into ``label`` (int64), ``I1..I13`` (float32, NaN if empty), ``C1..C26`` (str).

    Integer features stay raw counts: the usual signed log1p happens inside the served graph
    (the contract's ``transform="log1p"``), so a client sends exactly what the file holds.
    Categoricals must be 8 hex digits or empty (missing -> ""). Rows keep file order, which is
    chronological in Criteo's releases.

    Raises:
        DataError: naming the file, column and 1-based line of the first bad value.
    """
    source = Path(path)
    raw = read_delimited(source, sep="\t", num_fields=len(COLUMNS), max_rows=max_rows)
    raw.columns = list(COLUMNS)
    out: dict[str, np.ndarray | pd.Series] = {}
    label_text = raw["label"].str.strip()
    bad = ~label_text.isin(("0", "1")).to_numpy()
    if bad.any():
        pos = int(bad.argmax())
        shown = label_text.iloc[pos]
        what = "missing label (NaN)" if shown == "" else f"label must be 0 or 1, got {shown!r}"
        raise DataError(f"{source}: column 'label', line {pos + 1}: {what}")
    out["label"] = label_text.astype(np.int64).to_numpy()
    for name in INT_COLUMNS:
        values = parse_numeric(
            raw[name], source=str(source), column=name, integer=True, allow_missing=True, row_offset=1
        )
        out[name] = np.asarray(values, dtype=np.float32)
    for name in CAT_COLUMNS:
        text = raw[name].str.strip().str.lower()
        ok = text.str.fullmatch(r"[0-9a-f]{8}").to_numpy() | text.eq("").to_numpy()
        if not ok.all():
            pos = int((~ok).argmax())
            raise DataError(
                f"{source}: column {name!r}, line {pos + 1}: expected 8 hex digits or empty, got {raw[name].iloc[pos]!r}"
            )
        out[name] = text
    return pd.DataFrame(out)


def criteo_contract(
    train: pd.DataFrame,
    *,
    max_vocab: int = 10_000,
    min_count: int = 2,
    hash_buckets: int | None = None,
    embedding_dim: int = 8,
    log_counts: bool = True,
) -> FeatureContract:
    """Criteo contract from training rows (raw integer counts).

    ``log_counts`` gives I1..I13 the in-graph ``log1p`` transform (statistics of
    ``signed_log1p(x)``, raw defaults); otherwise they are normalised as they come. A
    categorical whose values seen ``min_count`` times fit in ``max_vocab`` gets that vocabulary
    (rarer values share the OOV bucket); a larger one gets hash buckets. Criteo's features are
    anonymous, so every feature is a ``context`` feature: the request carries all.
    """
    transform = "log1p" if log_counts else "none"
    recipes = [FeatureRecipe(name, "numeric", Entity.CONTEXT, transform=transform) for name in INT_COLUMNS]
    recipes += [
        FeatureRecipe(
            name,
            "categorical",
            Entity.CONTEXT,
            min_count=min_count,
            max_vocab=max_vocab,
            hash_buckets=hash_buckets,
            embedding_dim=embedding_dim,
        )
        for name in CAT_COLUMNS
    ]
    return contract_from_recipes(train, recipes, source="criteo")


def load_criteo(
    path: str | os.PathLike[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_rows: int | None = None,
    log_counts: bool = True,
    **contract_options: int,
) -> Splits:
    """Read a Criteo TSV and split it in file (= time) order.

    Integers stay raw (``log_counts``: log1p-transformed in the graph, see ``criteo_contract``);
    a missing integer becomes its feature's raw ``default``, which normalises to ~0.
    """
    frame = read_criteo_tsv(path, max_rows=max_rows)
    train_f, valid_f, _ = check_fractions(fractions)
    n = len(frame)
    first, second = round(n * train_f), round(n * (train_f + valid_f))
    if not 0 < first < second < n:
        raise DataError(
            f"{path}: {n} rows are too few to split into train/valid/test with {tuple(fractions)}"
        )
    frame["timestamp"] = np.arange(n, dtype=np.int64)  # file order stands in for time
    train, valid, test = (
        frame.iloc[a:b].reset_index(drop=True) for a, b in ((0, first), (first, second), (second, n))
    )
    contract = criteo_contract(train, log_counts=log_counts, **contract_options)
    fills = {name: np.float32(contract[name].default) for name in INT_COLUMNS}
    parts = [
        part.fillna(fills).astype(dict.fromkeys(INT_COLUMNS, np.float32)) for part in (train, valid, test)
    ]
    split = f"file-order split (the file is in time order: last {1 - train_f - valid_f:.0%} to test, the {valid_f:.0%} before to validation)"
    return Splits("criteo", contract, *parts, split=split)


def write_criteo_tsv(
    path: str | os.PathLike[str], num_rows: int, *, seed: int, missing_rate: float = 0.1
) -> Path:
    """Write ``num_rows`` of Criteo-format TSV with a learnable label (for tests and demos).

    Each C column draws from its own pool of 8-hex values (pool sizes 4 to 5,000, Zipf-like
    use); integers are overdispersed counts (I2 may be negative as in the real data); the label
    is Bernoulli of a logit over a few integers and categoricals. Fields go missing at
    ``missing_rate``. Written in chunks to a temporary file, then renamed.
    """
    if num_rows < 1:
        raise DataError(f"num_rows must be >= 1, got {num_rows}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    sizes = np.unique(np.geomspace(4, 5000, len(CAT_COLUMNS)).astype(int), return_counts=False)
    sizes = np.resize(sizes, len(CAT_COLUMNS))
    pools = [
        np.array([f"{v:08x}" for v in rng.choice(2**32, size, replace=False)], dtype=object) for size in sizes
    ]
    weights = [rng.normal(0, 0.3, size) for size in sizes]
    int_weights = rng.normal(0, 0.25, len(INT_COLUMNS))
    target = Path(path)
    with atomic_path(target) as tmp, tmp.open("w", encoding="ascii", newline="") as handle:
        for start in range(0, num_rows, 50_000):
            n = min(50_000, num_rows - start)
            handle.write(_criteo_chunk(rng, n, pools, weights, int_weights, missing_rate))
    return target


def _criteo_chunk(rng, n, pools, weights, int_weights, missing_rate: float) -> str:
    logit = np.full(n, -1.5)
    columns: list[np.ndarray] = []
    ints = rng.negative_binomial(1, 0.15, (n, len(INT_COLUMNS))).astype(np.int64)
    ints[:, 1] -= rng.integers(0, 3, n)  # I2 dips below zero like the real column
    logit += signed_log1p(ints.astype(float)) @ int_weights
    for j in range(len(INT_COLUMNS)):
        text = ints[:, j].astype(str).astype(object)
        text[rng.random(n) < missing_rate] = ""
        columns.append(text)
    for pool, weight in zip(pools, weights, strict=True):
        idx = np.minimum(rng.zipf(1.3, n) - 1, len(pool) - 1)
        logit += weight[idx] - weight[0]  # relative to the most common value, so the CTR stays ~25%
        text = pool[idx].copy()
        text[rng.random(n) < missing_rate] = ""
        columns.append(text)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64).astype(str).astype(object)
    rows = np.stack([label, *columns], axis=1)
    return "".join("\t".join(row) + "\n" for row in rows)

"""Synthetic CTR data: events drawn from a known logit, written to parquet in bounded-memory chunks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training.atomic_files import atomic_path, atomic_write_text
from training.context_features import derive_time_context
from training.features import Entity, FeatureContract

from .base import (
    DEFAULT_FRACTIONS,
    DataError,
    Splits,
    atomic_write_parquet,
    check_fractions,
    check_labels,
    read_parquet_checked,
    time_split,
)
from .contracts import FeatureRecipe, contract_from_recipes
from .history import HISTORY_COLUMN, add_history
from .metrics import roc_auc
from .splits import SplitSpec
from .synthetic_world import DEVICES, SyntheticConfig, World, build_world, true_logit

# Rows are drawn in fixed blocks, each with its own seeded RNG, so the data does not depend on
# how the writer chunks it: any chunk size yields the same rows as writing everything at once.
BLOCK_ROWS = 65_536
EVENTS_FILE = "events.parquet"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"
META_FILE = "synthetic.json"

EVENT_SCHEMA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("user_id", pa.string()),
        ("user_segment", pa.string()),
        ("user_activity", pa.float32()),
        ("item_id", pa.string()),
        ("category", pa.string()),
        ("tags", pa.string()),
        ("price", pa.float32()),
        ("hour", pa.int64()),
        ("device", pa.string()),
        ("position", pa.int64()),
        ("label", pa.int64()),
        ("p_true", pa.float64()),
    ]
)
FEATURE_COLUMNS = (
    "user_id",
    "user_segment",
    "user_activity",
    "item_id",
    "category",
    "tags",
    "price",
    "hour",
    "device",
    "position",
)


def user_names(n: int) -> np.ndarray:
    return np.array([f"u{i}" for i in range(n)], dtype=object)


def item_names(n: int) -> np.ndarray:
    return np.array([f"i{i}" for i in range(n)], dtype=object)


def segment_names(n: int) -> np.ndarray:
    return np.array([f"s{i:02d}" for i in range(n)], dtype=object)


def category_names(n: int) -> np.ndarray:
    return np.array([f"c{i:02d}" for i in range(n)], dtype=object)


def _strings(indices: np.ndarray, names: Sequence[str]) -> pa.Array:
    """Decode integer codes to a string column inside Arrow (much faster than Python strings)."""
    dictionary = pa.array(list(names), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), dictionary).cast(pa.string())


def generate_block(world: World, block: int) -> pa.Table:
    """Rows ``[block * BLOCK_ROWS, ...)`` of the data set, from the block's own seeded RNG."""
    config = world.config
    start = block * BLOCK_ROWS
    stop = min(start + BLOCK_ROWS, config.num_rows)
    if start >= stop:
        raise DataError(f"block {block} is past the end of {config.num_rows} rows")
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, block)))
    n = stop - start
    rows = np.arange(start, stop, dtype=np.int64)
    timestamp = config.start_time + (rows * config.span_seconds) // config.num_rows
    hour = derive_time_context(timestamp, ["hour"])["hour"]
    user = np.minimum(
        np.searchsorted(world.user_cum, rng.random(n) * world.user_cum[-1], side="right"),
        config.num_users - 1,
    )
    r = rng.random(n)
    device_cum = world.user_device_cum[user]
    device = (r > device_cum[:, 0]).astype(np.int64) + (r > device_cum[:, 1])
    # only items already published can be shown; pick among them by popularity
    published = np.searchsorted(world.publish_sorted, timestamp, side="right")
    reach = world.popularity_cum[published - 1]
    slot = np.minimum(
        np.searchsorted(world.popularity_cum, rng.random(n) * reach, side="right"), published - 1
    )
    item = world.publish_order[slot]
    position = rng.integers(1, config.num_positions + 1, n)
    p_true = 1.0 / (1.0 + np.exp(-true_logit(world, user, item, hour, device, position)))
    label = (rng.random(n) < p_true).astype(np.int64)
    columns = {
        "timestamp": pa.array(timestamp),
        "user_id": _strings(user, user_names(config.num_users)),
        "user_segment": _strings(world.user_segment[user], segment_names(config.num_segments)),
        "user_activity": pa.array(world.user_activity[user].astype(np.float32)),
        "item_id": _strings(item, item_names(config.num_items)),
        "category": _strings(world.item_category[item], category_names(config.num_categories)),
        "tags": _strings(item, world.item_tags),
        "price": pa.array(world.item_price[item].astype(np.float32)),
        "hour": pa.array(hour.astype(np.int64)),
        "device": _strings(device, DEVICES),
        "position": pa.array(position.astype(np.int64)),
        "label": pa.array(label),
        "p_true": pa.array(p_true),
    }
    return pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)


def iter_chunks(world: World, chunk_rows: int) -> Iterator[pa.Table]:
    """Yield the data set as tables of ``chunk_rows`` rows (the last may be shorter)."""
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be >= 1, got {chunk_rows}")
    pending: list[pa.Table] = []
    buffered = 0
    for block in range(-(-world.config.num_rows // BLOCK_ROWS)):
        table = generate_block(world, block)
        pending.append(table)
        buffered += table.num_rows
        while buffered >= chunk_rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, chunk_rows)
            rest = merged.slice(chunk_rows)
            pending, buffered = ([rest] if rest.num_rows else []), rest.num_rows
    if buffered:
        yield pa.concat_tables(pending)


def generate_events(config: SyntheticConfig) -> pd.DataFrame:
    """The whole data set in memory (for small sizes and tests; large ones go through write)."""
    world = build_world(config)
    tables = [generate_block(world, b) for b in range(-(-config.num_rows // BLOCK_ROWS))]
    return pa.concat_tables(tables).to_pandas()


def entity_tables(world: World) -> tuple[pd.DataFrame, pd.DataFrame]:
    """User and item tables for the recommender's feature stores and recall.

    Column names equal the contract's feature names (``user_segment``, ``user_activity``,
    ``category``, ``tags``, ``price``), so a feature store can serve them without a mapping.
    """
    config = world.config
    users = pd.DataFrame(
        {
            "user_id": user_names(config.num_users),
            "user_segment": segment_names(config.num_segments)[world.user_segment],
            "user_activity": world.user_activity.astype(np.float32),
            "traffic_share": np.diff(world.user_cum, prepend=0.0),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": item_names(config.num_items),
            "category": category_names(config.num_categories)[world.item_category],
            "tags": list(world.item_tags),
            "price": world.item_price.astype(np.float32),
            "publish_time": world.item_publish_time,
            "popularity": world.item_popularity,
        }
    )
    return users, items


def write_synthetic(
    out_dir: str | os.PathLike[str], config: SyntheticConfig, *, chunk_rows: int = 200_000
) -> Path:
    """Write events (one row group per chunk), users, items and a manifest into ``out_dir``.

    Memory stays bounded by ``chunk_rows`` plus one generation block, whatever ``num_rows`` is.
    Every file is written to a temporary name and renamed, so a crash never leaves a half file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(config)
    with (
        atomic_path(out / EVENTS_FILE) as tmp,
        pq.ParquetWriter(tmp, EVENT_SCHEMA, compression="zstd") as writer,
    ):
        for chunk in iter_chunks(world, chunk_rows):
            writer.write_table(chunk, row_group_size=chunk_rows)
    users, items = entity_tables(world)
    atomic_write_parquet(users, out / USERS_FILE)
    atomic_write_parquet(items, out / ITEMS_FILE)
    atomic_write_text(out / META_FILE, json.dumps({"config": config.to_dict()}, indent=2) + "\n")
    return out


def read_config(path: str | os.PathLike[str]) -> SyntheticConfig:
    """The config a synthetic directory was generated with (from its manifest)."""
    meta = Path(path) / META_FILE
    try:
        return SyntheticConfig(**json.loads(meta.read_text(encoding="utf-8"))["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta}: cannot read the synthetic manifest: {exc}") from exc


def read_events(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check ``events.parquet``: all columns present, wire dtypes, labels 0/1, p_true in [0, 1]."""
    source = Path(path) / EVENTS_FILE if Path(path).is_dir() else Path(path)
    frame = read_parquet_checked(source, EVENT_SCHEMA.names)
    out = pd.DataFrame(index=frame.index)
    for field in EVENT_SCHEMA:
        column = frame[field.name]
        if pa.types.is_string(field.type):
            if not (pd.api.types.is_string_dtype(column) or column.dtype == object) or column.isna().any():
                bad = int(np.flatnonzero(column.isna().to_numpy())[0]) if column.isna().any() else 0
                raise DataError(
                    f"{source}: column {field.name!r}, row {bad}: expected non-null strings, got {column.dtype}"
                )
            out[field.name] = column.astype(str)
        elif field.name == "label":
            out["label"] = check_labels(
                column.to_numpy(dtype=np.float64, na_value=np.nan), source=str(source)
            )
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(values)
            if field.name == "p_true":
                bad |= (values < 0) | (values > 1)
            if pa.types.is_integer(field.type):
                bad |= np.isfinite(values) & (values != np.round(values))
            if np.any(bad):
                pos = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{source}: column {field.name!r}, row {pos}: invalid value {float(values[pos])!r}"
                )
            out[field.name] = values.astype(field.type.to_pandas_dtype())
        else:
            raise DataError(
                f"{source}: column {field.name!r}: expected {field.type}, got dtype {column.dtype}"
            )
    return out


def synthetic_contract(
    train: pd.DataFrame, *, embedding_dim: int = 8, seed: int | None = None, history_len: int = 0
) -> FeatureContract:
    """The synthetic source's contract, with vocabularies and numeric stats from ``train`` only.

    ``price`` is log1p-transformed in the graph: the true logit uses z-scored log(price), which
    linear and FM terms can then represent. ``history_len`` > 0 adds the ``history`` sequence
    (``add_history``'s column) sharing ``item_id``'s table; 0 keeps the contract as before.
    """
    dim = {"embedding_dim": embedding_dim}
    recipes = (
        FeatureRecipe("user_id", "categorical", Entity.USER, **dim),
        FeatureRecipe("user_segment", "categorical", Entity.USER, **dim),
        FeatureRecipe("user_activity", "numeric", Entity.USER),
        FeatureRecipe("item_id", "categorical", Entity.ITEM, **dim),
        FeatureRecipe("category", "categorical", Entity.ITEM, **dim),
        FeatureRecipe("tags", "multi_categorical", Entity.ITEM, **dim),
        FeatureRecipe("price", "numeric", Entity.ITEM, transform="log1p"),
        FeatureRecipe("hour", "categorical", Entity.CONTEXT, **dim),
        FeatureRecipe("device", "categorical", Entity.CONTEXT, **dim),
        FeatureRecipe("position", "categorical", Entity.CONTEXT, **dim),
    )
    if history_len:
        recipes += (
            FeatureRecipe(
                HISTORY_COLUMN, "sequence", Entity.USER, max_len=history_len, item_feature="item_id"
            ),
        )
    metadata = [("seed", str(seed))] if seed is not None else []
    return contract_from_recipes(train, recipes, source="synthetic", metadata=metadata)


def load_synthetic(
    path: str | os.PathLike[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    embedding_dim: int = 8,
    history_len: int = 0,
) -> Splits:
    """Read a directory written by :func:`write_synthetic` and split it by time.

    ``history_len`` > 0 gives every row the user's last clicks before it (``add_history``).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: synthetic data directory not found (generate it with recsys-generate)")
    seed = read_config(root).seed if (root / META_FILE).is_file() else None
    events = read_events(root)
    if history_len:
        events = add_history(events, history_len, only_positive="label")
    train, valid, test = time_split(events, fractions)
    contract = synthetic_contract(train, embedding_dim=embedding_dim, seed=seed, history_len=history_len)
    _, valid_f, test_f = check_fractions(fractions)
    split = SplitSpec(kind="global", valid=valid_f, test=test_f).describe()
    return Splits("synthetic", contract, train, valid, test, split=split)


def oracle_auc(frame: pd.DataFrame) -> float:
    """AUC of the true click probability: the best any model can do on this frame."""
    if "p_true" not in frame.columns:
        raise DataError("oracle_auc needs a 'p_true' column (only synthetic data has one)")
    return roc_auc(frame["label"].to_numpy(), frame["p_true"].to_numpy())

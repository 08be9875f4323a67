"""Build the recall artefacts offline from the same interaction logs the model was trained on."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recommender_client.recall.artifacts import ArtifactError, Catalog, RecallArtifacts, save_artifacts
from training.features import Entity, FeatureContract

DAY = 86400.0


@dataclass(frozen=True)
class BuildConfig:
    """How the artefacts are computed.

    Attributes:
        half_life_days: a click this many days before the newest event counts half (popularity).
        cf_neighbors: neighbours kept per item for item-CF.
        cf_window: two clicks of one user at most this many positions apart co-occur.
        history_len: newest events kept per user (for item-CF seeds and the seen filter).
        user_column, item_column, time_column, label_column, category_column, tags_column,
        publish_column: column names in the logs and tables.
    """

    half_life_days: float = 7.0
    cf_neighbors: int = 50
    cf_window: int = 5
    history_len: int = 50
    user_column: str = "user_id"
    item_column: str = "item_id"
    time_column: str = "timestamp"
    label_column: str = "label"
    category_column: str = "category"
    tags_column: str = "tags"
    publish_column: str = "publish_time"

    def __post_init__(self) -> None:
        checks = {
            "half_life_days": self.half_life_days > 0,
            "cf_neighbors": self.cf_neighbors >= 1,
            "cf_window": self.cf_window >= 1,
            "history_len": self.history_len >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"BuildConfig: invalid {bad} (must be positive)")


Columns = Mapping[str, Sequence[Any] | np.ndarray]


def build_artifacts(
    events: Columns,
    *,
    contract: FeatureContract,
    items: Columns | None = None,
    users: Columns | None = None,
    config: BuildConfig | None = None,
) -> RecallArtifacts:
    """Compute popularity, item-CF neighbours, histories and feature tables.

    Args:
        events: the interaction log as columns (user, item, time, label, plus any feature columns).
        contract: decides which user and item features are stored for the online join.
        items: optional item table (item id, category, tags, publish time, item features); items
            seen only in ``events`` take their metadata from their newest event.
        users: optional user table (user id plus user features); same fallback.
        config: column names and tuning.
    """
    cfg = config or BuildConfig()
    need = [cfg.user_column, cfg.item_column, cfg.time_column, cfg.label_column]
    missing = [c for c in need if c not in events]
    if missing:
        raise ArtifactError(f"interaction log: missing columns {missing} (have {sorted(events)})")
    ev_users = np.asarray([str(u) for u in events[cfg.user_column]], dtype=object)
    ev_items = np.asarray([str(i) for i in events[cfg.item_column]], dtype=object)
    times = np.asarray(events[cfg.time_column], dtype=np.float64)
    labels = np.asarray(events[cfg.label_column])
    if len(times) == 0:
        raise ArtifactError("interaction log is empty")
    if not np.isfinite(times).all():
        row = int(np.flatnonzero(~np.isfinite(times))[0])
        raise ArtifactError(f"interaction log: column {cfg.time_column!r}, row {row}: not a finite time")
    bad_label = ~np.isin(labels, (0, 1))
    if bad_label.any():
        row = int(np.flatnonzero(bad_label)[0])
        raise ArtifactError(f"interaction log: column {cfg.label_column!r}, row {row}: label must be 0 or 1")
    order = np.argsort(times, kind="stable")  # every later step sees events oldest first

    item_feats = [f.name for f in contract.by_entity(Entity.ITEM)]
    user_feats = [f.name for f in contract.by_entity(Entity.USER)]
    item_table = _entity_table(
        "items",
        items,
        events,
        cfg.item_column,
        order,
        [cfg.category_column, cfg.tags_column, cfg.publish_column, *item_feats],
    )
    user_table = _entity_table("users", users, events, cfg.user_column, order, user_feats)
    item_ids = tuple(item_table)
    catalog = Catalog(
        item_ids=item_ids,
        category=tuple(str(_or(item_table[i].get(cfg.category_column), "")) for i in item_ids),
        tags=tuple(str(_or(item_table[i].get(cfg.tags_column), "")) for i in item_ids),
        publish_time=np.array(
            [_time(item_table[i].get(cfg.publish_column)) for i in item_ids], dtype=np.float64
        ),
    )
    user_ids = tuple(user_table)
    item_pos = catalog.positions(ev_items[order].tolist())
    user_index = {u: k for k, u in enumerate(user_ids)}
    user_pos = np.fromiter((user_index[u] for u in ev_users[order]), dtype=np.int64, count=len(order))
    t_sorted, clicked = times[order], labels[order].astype(bool)
    as_of = float(t_sorted[-1])

    weights = np.where(clicked, 0.5 ** ((as_of - t_sorted) / (cfg.half_life_days * DAY)), 0.0)
    popularity = np.bincount(item_pos, weights=weights, minlength=len(catalog))
    pop_items, pop_scores = _ranked(np.arange(len(catalog)), popularity)
    cat_names = tuple(sorted(set(catalog.category) - {""}))
    cat_of = np.array(catalog.category, dtype=object)
    offsets, cat_items, cat_scores = [0], [], []
    for name in cat_names:
        members = np.flatnonzero(cat_of == name)
        ranked, scores = _ranked(members, popularity[members])
        cat_items.append(ranked)
        cat_scores.append(scores)
        offsets.append(offsets[-1] + len(ranked))

    neighbors, sims = item_cf(
        user_pos[clicked], item_pos[clicked], len(catalog), cfg.cf_window, cfg.cf_neighbors
    )
    h_off, h_idx = _history(user_pos, len(user_ids), cfg.history_len)
    return RecallArtifacts(
        catalog=catalog,
        user_ids=user_ids,
        as_of=as_of,
        half_life_days=cfg.half_life_days,
        popular_items=pop_items.astype(np.int32),
        popular_scores=pop_scores.astype(np.float32),
        category_names=cat_names,
        category_offsets=np.asarray(offsets, dtype=np.int64),
        category_items=np.concatenate(cat_items or [np.zeros(0)]).astype(np.int32),
        category_scores=np.concatenate(cat_scores or [np.zeros(0)]).astype(np.float32),
        cf_neighbors=neighbors,
        cf_scores=sims,
        history_offsets=h_off,
        history_items=item_pos[h_idx].astype(np.int32),
        history_times=t_sorted[h_idx],
        history_clicked=clicked[h_idx],
        user_features={n: [_plain(user_table[u].get(n)) for u in user_ids] for n in user_feats},
        item_features={n: [_plain(item_table[i].get(n)) for i in item_ids] for n in item_feats},
    )


def item_cf(
    users: np.ndarray, items: np.ndarray, num_items: int, window: int, top_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Item-to-item similarity from click sequences (clicks given oldest first).

    Each user's sequence keeps an item's last click only. Two items ``d`` positions apart
    (``1 <= d <= window``) co-occur with weight ``1 / d`` in both directions, and the similarity
    is the summed weight divided by ``sqrt(n_a * n_b)``, where ``n_x`` is the number of users who
    clicked ``x`` (cosine-style, so popular items do not neighbour everything).

    Returns:
        ``(neighbors int32 [num_items, top_n], scores float32 [num_items, top_n])``, best first,
        ties broken by lower item position, -1 / 0 padded.
    """
    neighbors = np.full((num_items, top_n), -1, dtype=np.int32)
    scores = np.zeros((num_items, top_n), dtype=np.float32)
    # last click per (user, item), kept in click order
    key = users.astype(np.int64) * num_items + items
    _, last_rev = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(key) - 1 - last_rev)
    u, it = users[keep], items[keep]
    order = np.argsort(u, kind="stable")  # group by user, click order inside
    u, it = u[order], it[order]
    n_users_of = np.bincount(it, minlength=num_items).astype(np.float64)
    a_parts, b_parts, w_parts = [], [], []
    for d in range(1, window + 1):
        same = u[:-d] == u[d:]
        a, b = it[:-d][same], it[d:][same]
        w = np.full(len(a), 1.0 / d)
        a_parts += [a, b]
        b_parts += [b, a]
        w_parts += [w, w]
    if not a_parts or not sum(len(p) for p in a_parts):
        return neighbors, scores
    a = np.concatenate(a_parts).astype(np.int64)
    b = np.concatenate(b_parts).astype(np.int64)
    pair, inverse = np.unique(a * num_items + b, return_inverse=True)
    weight = np.bincount(inverse, weights=np.concatenate(w_parts))
    pa, pb = pair // num_items, pair % num_items
    sim = weight / np.sqrt(n_users_of[pa] * n_users_of[pb])
    ranked = np.lexsort((pb, -sim, pa))
    pa, pb, sim = pa[ranked], pb[ranked], sim[ranked]
    starts = np.searchsorted(pa, pa, side="left")
    rank = np.arange(len(pa)) - starts
    keep_top = rank < top_n
    neighbors[pa[keep_top], rank[keep_top]] = pb[keep_top]
    scores[pa[keep_top], rank[keep_top]] = sim[keep_top]
    return neighbors, scores


def _ranked(members: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members with a positive score, best first, ties by lower position."""
    positive = scores > 0
    members, scores = members[positive], scores[positive]
    order = np.lexsort((members, -scores))
    return members[order], scores[order]


def _history(user_pos: np.ndarray, num_users: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR offsets and event indices (oldest first) of each user's newest ``keep`` events."""
    by_user = np.argsort(user_pos, kind="stable")
    counts = np.bincount(user_pos, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_from_end = counts[user_pos[by_user]] - (np.arange(len(by_user)) - starts[user_pos[by_user]])
    selected = by_user[rank_from_end <= keep]
    kept = np.minimum(counts, keep)
    return np.concatenate([[0], np.cumsum(kept)]).astype(np.int64), selected


def _entity_table(
    what: str, table: Columns | None, events: Columns, key: str, order: np.ndarray, columns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Id -> {column: value}: the table's rows first, then ids only in the log from their newest event."""
    out: dict[str, dict[str, Any]] = {}
    if table is not None:
        if key not in table:
            raise ArtifactError(f"{what} table: missing id column {key!r} (have {sorted(table)})")
        present = [c for c in columns if c in table]
        ids = [str(v) for v in table[key]]
        cols = {c: list(table[c]) for c in present}
        for row, ident in enumerate(ids):
            if ident in out:
                raise ArtifactError(f"{what} table: duplicate id {ident!r} at row {row}")
            out[ident] = {c: cols[c][row] for c in present}
    from_log = [c for c in columns if c in events]
    log_ids = [str(v) for v in events[key]]
    log_cols = {c: events[c] for c in from_log}
    for row in order[::-1].tolist():  # newest first, so the newest event wins
        ident = log_ids[row]
        if ident not in out:
            out[ident] = {c: log_cols[c][row] for c in from_log}
    return out


def _plain(value: Any) -> Any:
    """Numpy scalars to Python values for JSON; missing values (None, NaN) to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _or(value: Any, default: Any) -> Any:
    value = _plain(value)
    return default if value is None else value


def _time(value: Any) -> float:
    value = _plain(value)
    if value is None:
        return math.nan
    if hasattr(value, "timestamp"):  # datetime-like
        return float(value.timestamp())
    return float(value)


def read_parquet_columns(path: Path) -> dict[str, np.ndarray]:
    """Read a parquet file into numpy columns (offline only: the service never loads pyarrow)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a readable parquet file: {exc}") from exc
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


LOG_FILES = ("train.parquet", "events.parquet")


def build_from_data_dir(
    data_dir: Path,
    contract: FeatureContract,
    out_dir: Path,
    config: BuildConfig | None = None,
    log_file: str | None = None,
) -> RecallArtifacts:
    """Read the interaction log (``log_file``, else the first of ``LOG_FILES`` present) plus
    ``items.parquet``/``users.parquet`` if present, build the artefacts and save them with the contract."""
    names = (log_file,) if log_file else LOG_FILES
    log_path = next((data_dir / n for n in names if (data_dir / n).is_file()), None)
    if log_path is None:
        raise ArtifactError(f"no interaction log {list(names)} in {data_dir}")
    events = read_parquet_columns(log_path)
    items = (
        read_parquet_columns(data_dir / "items.parquet") if (data_dir / "items.parquet").is_file() else None
    )
    users = (
        read_parquet_columns(data_dir / "users.parquet") if (data_dir / "users.parquet").is_file() else None
    )
    artifacts = build_artifacts(events, contract=contract, items=items, users=users, config=config)
    save_artifacts(artifacts, out_dir)
    contract.save(out_dir)
    return artifacts


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m recommender_client.recall.build --data-dir D --contract C --out O``."""
    parser = argparse.ArgumentParser(
        description="Build the ranking service's recall artefacts from training logs."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="folder with the log (items/users.parquet optional)")
    source.add_argument(
        "--data",
        type=Path,
        metavar="SPEC",
        help="a dataset spec YAML (as recsys-train --data): its files, typing and split",
    )
    parser.add_argument(
        "--spec-rows",
        choices=("train", "all"),
        default="train",
        help="with --data: the spec's training rows (default: what the model learned from) or all",
    )
    parser.add_argument("--contract", type=Path, required=True, help="feature_contract.json or its folder")
    parser.add_argument("--out", type=Path, required=True, help="artefact folder to write")
    parser.add_argument(
        "--log-file", help=f"interaction log inside --data-dir (default: first of {LOG_FILES})"
    )
    parser.add_argument("--half-life-days", type=float, default=BuildConfig.half_life_days)
    parser.add_argument("--cf-neighbors", type=int, default=BuildConfig.cf_neighbors)
    parser.add_argument("--cf-window", type=int, default=BuildConfig.cf_window)
    parser.add_argument("--history-len", type=int, default=BuildConfig.history_len)
    args = parser.parse_args(argv)
    try:
        config = BuildConfig(
            half_life_days=args.half_life_days,
            cf_neighbors=args.cf_neighbors,
            cf_window=args.cf_window,
            history_len=args.history_len,
        )
        contract = FeatureContract.load(args.contract)
        if args.data is not None:
            from recommender_client.recall.from_spec import build_from_spec

            artifacts = build_from_spec(args.data, contract, args.out, config, args.spec_rows)
        else:
            artifacts = build_from_data_dir(args.data_dir, contract, args.out, config, args.log_file)
    except ValueError as exc:  # ArtifactError, ContractError and DataError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: {len(artifacts.catalog)} items, {len(artifacts.user_ids)} users, "
        f"as_of={artifacts.as_of:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

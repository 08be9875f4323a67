"""MovieLens-100K as CTR data (label = rating >= 4), from RecBole atomic files or GroupLens u.* files."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training.context_features import derive_time_context
from training.features import MULTI_VALUE_SEPARATOR, Entity, FeatureContract

from .base import DataError, Splits, check_fractions, parse_numeric
from .cold_start import DEFAULT_COLD_START_ROWS
from .contracts import FeatureRecipe, contract_from_recipes
from .history import HISTORY_COLUMN, add_history
from .prior_stats import PRIOR_STAT_COLUMNS, add_prior_stats
from .splits import SplitSpec, build_splits, split_spec_with
from .text_tables import read_atomic, read_delimited

# Genre order of the 19 flags in GroupLens u.item (u.genre); RecBole uses the same names.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
# RecBole writes an unknown year as 'unkonwn' (sic); GroupLens leaves the date empty.
_UNKNOWN_YEAR = {"", "unknown", "unkonwn"}
_RELEASE_DATE = re.compile(r"^\d{1,2}-[A-Za-z]{3}-(\d{4})$")
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
AGE_BUCKETS: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)  # the MovieLens-1M age groups
EVENT_COLUMNS = (
    "user_id", "item_id", "rating", "timestamp", "label", "age_bucket", "gender", "occupation",
    "genres", "release_year", "hour",
)  # fmt: skip


def age_bucket(ages: np.ndarray) -> np.ndarray:
    """Map ages to the lower bound of their MovieLens-1M group (under 18 -> 1)."""
    edges = np.array(AGE_BUCKETS[1:])
    return np.array(AGE_BUCKETS, dtype=np.int64)[np.searchsorted(edges, ages, side="right")]


def detect_format(root: Path) -> str:
    """``recbole`` if the folder has ``*.inter``, ``grouplens`` if it has ``u.data``."""
    if not root.is_dir():
        raise DataError(f"{root}: MovieLens directory not found")
    if sorted(root.glob("*.inter")):
        return "recbole"
    if (root / "u.data").is_file():
        return "grouplens"
    raise DataError(f"{root}: neither RecBole atomic files (*.inter) nor GroupLens files (u.data) found")


def _atomic_file(root: Path, suffix: str) -> Path:
    found = sorted(root.glob(f"*.{suffix}"))
    if len(found) != 1:
        raise DataError(f"{root}: expected exactly one *.{suffix} file, found {[p.name for p in found]}")
    return found[0]


def _parse_years(
    raw: pd.Series,
    *,
    source: str,
    column: str,
    from_date: bool,
    row_offset: int,
    titles: pd.Series | None = None,
) -> np.ndarray:
    """Release years (NaN when unknown); a bad value is an error naming the line.

    RecBole's conversion broke one title ("... (1995) (V)" became title "... (1995)", year "V"),
    so when ``titles`` are given, a non-year token falls back to a "(YYYY)" at the title's end,
    which is what GroupLens' release date says for that film.
    """
    years = np.full(len(raw), np.nan)
    for pos, value in enumerate(raw.astype(str).str.strip()):
        if value in _UNKNOWN_YEAR:
            continue
        match = _RELEASE_DATE.match(value) if from_date else re.fullmatch(r"\d{4}", value)
        if not match and titles is not None:
            fallback = _TITLE_YEAR.search(str(titles.iloc[pos]))
            if fallback:
                years[pos] = float(fallback.group(1))
                continue
        if not match:
            want = "a date like 01-Jan-1995" if from_date else "a 4-digit year"
            raise DataError(
                f"{source}: column {column!r}, line {pos + row_offset}: expected {want}, got {value!r}"
            )
        years[pos] = float(match.group(1) if from_date else value)
    return years


def _read_recbole(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    inter_path, item_path, user_path = (_atomic_file(root, s) for s in ("inter", "item", "user"))
    inter = read_atomic(
        inter_path, {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"}
    )
    ratings = pd.DataFrame(
        {
            "user_id": inter["user_id"].str.strip(),
            "item_id": inter["item_id"].str.strip(),
            "rating": parse_numeric(inter["rating"], source=str(inter_path), column="rating", row_offset=2),
            "timestamp": parse_numeric(
                inter["timestamp"], source=str(inter_path), column="timestamp", integer=True, row_offset=2
            ),
        }
    )
    item = read_atomic(item_path, {"item_id": "token", "release_year": "token", "class": "token_seq"})
    items = pd.DataFrame(
        {
            "item_id": item["item_id"].str.strip(),
            "genres": item["class"].str.split().map(MULTI_VALUE_SEPARATOR.join),
            "release_year": _parse_years(
                item["release_year"],
                source=str(item_path),
                column="release_year",
                from_date=False,
                row_offset=2,
                titles=item["movie_title"] if "movie_title" in item.columns else None,
            ),
        }
    )
    user = read_atomic(
        user_path, {"user_id": "token", "age": "token", "gender": "token", "occupation": "token"}
    )
    users = pd.DataFrame(
        {
            "user_id": user["user_id"].str.strip(),
            "age": parse_numeric(
                user["age"], source=str(user_path), column="age", integer=True, row_offset=2
            ),
            "gender": user["gender"].str.strip(),
            "occupation": user["occupation"].str.strip(),
        }
    )
    return ratings, items, users, f"{inter_path}"


def _read_grouplens(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    data_path, item_path, user_path = root / "u.data", root / "u.item", root / "u.user"
    data = read_delimited(data_path, sep="\t", num_fields=4)
    ratings = pd.DataFrame(
        {
            "user_id": data[0].str.strip(),
            "item_id": data[1].str.strip(),
            "rating": parse_numeric(data[2], source=str(data_path), column="rating", row_offset=1),
            "timestamp": parse_numeric(
                data[3], source=str(data_path), column="timestamp", integer=True, row_offset=1
            ),
        }
    )
    item = read_delimited(item_path, sep="|", num_fields=5 + len(GENRES), encoding="latin-1")
    flags = np.stack(
        [
            parse_numeric(
                item[5 + g], source=str(item_path), column=f"genre {name}", integer=True, row_offset=1
            )
            for g, name in enumerate(GENRES)
        ],
        axis=1,
    )
    bad = ~np.isin(flags, (0.0, 1.0))
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise DataError(
            f"{item_path}: column 'genre {GENRES[col]}', line {row + 1}: flag must be 0 or 1, got {flags[row, col]:g}"
        )
    items = pd.DataFrame(
        {
            "item_id": item[0].str.strip(),
            "genres": [
                MULTI_VALUE_SEPARATOR.join(g for g, on in zip(GENRES, row, strict=True) if on)
                for row in flags
            ],
            "release_year": _parse_years(
                item[2], source=str(item_path), column="release date", from_date=True, row_offset=1
            ),
        }
    )
    user = read_delimited(user_path, sep="|", num_fields=5)
    users = pd.DataFrame(
        {
            "user_id": user[0].str.strip(),
            "age": parse_numeric(user[1], source=str(user_path), column="age", integer=True, row_offset=1),
            "gender": user[2].str.strip(),
            "occupation": user[3].str.strip(),
        }
    )
    return ratings, items, users, f"{data_path}"


def _join(ratings: pd.DataFrame, table: pd.DataFrame, key: str, source: str, table_name: str) -> pd.DataFrame:
    dupes = table[key][table[key].duplicated()]
    if not dupes.empty:
        raise DataError(f"{table_name}: duplicate {key} {dupes.iloc[0]!r}")
    unknown = ~ratings[key].isin(table[key])
    if unknown.any():
        pos = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(
            f"{source}: column {key!r}, row {pos}: {ratings[key].iloc[pos]!r} is not in {table_name}"
        )
    return ratings.merge(table, on=key, how="left", validate="many_to_one")


def read_movielens(path: str | os.PathLike[str], *, rating_threshold: float = 4.0) -> pd.DataFrame:
    """All ratings joined with user and item features, sorted by (timestamp, user, item).

    The format (RecBole atomic or GroupLens) is detected from the files present; both give the
    same frame for the same data, so either can feed the same contract.
    """
    root = Path(path)
    fmt = detect_format(root)
    ratings, items, users, source = _read_recbole(root) if fmt == "recbole" else _read_grouplens(root)
    item_table = f"{root} items" if fmt == "recbole" else str(root / "u.item")
    user_table = f"{root} users" if fmt == "recbole" else str(root / "u.user")
    frame = _join(_join(ratings, items, "item_id", source, item_table), users, "user_id", source, user_table)
    timestamp = frame["timestamp"].to_numpy(dtype=np.int64)
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str),
            "item_id": frame["item_id"].astype(str),
            "rating": frame["rating"].astype(np.float32),
            "timestamp": timestamp,
            "label": (frame["rating"].to_numpy() >= rating_threshold).astype(np.int64),
            "age_bucket": age_bucket(frame["age"].to_numpy()),
            "gender": frame["gender"].astype(str),
            "occupation": frame["occupation"].astype(str),
            "genres": frame["genres"].astype(str),
            "release_year": frame["release_year"].astype(np.float32),
            **derive_time_context(timestamp, ["hour"]),
        }
    )
    # numeric ids sort naturally; the secondary keys make the order independent of file order
    order = np.lexsort(
        (
            pd.to_numeric(out["item_id"], errors="coerce"),
            pd.to_numeric(out["user_id"], errors="coerce"),
            timestamp,
        )
    )
    return out.iloc[order].reset_index(drop=True)


def movielens_recipes(
    *, embedding_dim: int = 8, min_count: int = 1, history_len: int = 0, prior_stats: bool = False
) -> tuple[FeatureRecipe, ...]:
    """MovieLens' features as a dataset spec would declare them (``min_count`` for the two ids).

    ``history_len`` > 0 adds the ``history`` sequence (liked films before the row, sharing
    ``item_id``'s table); ``prior_stats`` the user's and the item's earlier rating counts
    (log1p), smoothed like rates and mean ratings (``prior_stats.py``). The defaults keep the recipes as before.
    """
    ids = {"min_count": min_count, "embedding_dim": embedding_dim}
    small = {"embedding_dim": embedding_dim}
    history = FeatureRecipe(
        HISTORY_COLUMN, "sequence", Entity.USER, max_len=history_len, item_feature="item_id"
    )
    return (
        FeatureRecipe("user_id", "categorical", Entity.USER, **ids),
        FeatureRecipe("age_bucket", "categorical", Entity.USER, **small),
        FeatureRecipe("gender", "categorical", Entity.USER, **small),
        FeatureRecipe("occupation", "categorical", Entity.USER, **small),
        FeatureRecipe("item_id", "categorical", Entity.ITEM, **ids),
        FeatureRecipe("genres", "multi_categorical", Entity.ITEM, **small),
        FeatureRecipe("release_year", "numeric", Entity.ITEM),
        FeatureRecipe("hour", "categorical", Entity.CONTEXT, **small),
        *([history] if history_len else []),
        *(_prior_stat_recipes() if prior_stats else ()),
    )


def _prior_stat_recipes() -> tuple[FeatureRecipe, ...]:
    """The prior statistics as numeric user and item features; counts are heavy-tailed (log1p)."""
    return tuple(
        FeatureRecipe(name, "numeric", entity, transform="log1p" if name.endswith("_count") else "none")
        for name, entity in PRIOR_STAT_COLUMNS.items()
    )


def movielens_contract(train: pd.DataFrame, *, embedding_dim: int = 8, min_count: int = 1) -> FeatureContract:
    """Contract for MovieLens CTR: user id/age/gender/occupation, item id/genres/year, hour of day."""
    recipes = movielens_recipes(embedding_dim=embedding_dim, min_count=min_count)
    return contract_from_recipes(train, recipes, source="movielens")


def load_movielens(
    path: str | os.PathLike[str],
    *,
    split: str | SplitSpec = "per-user",
    fractions: Sequence[float] | None = None,
    embedding_dim: int = 8,
    rating_threshold: float = 4.0,
    min_count: int = 1,
    cold_start_rows: int = DEFAULT_COLD_START_ROWS,
    history_len: int = 0,
    prior_stats: bool = False,
) -> Splits:
    """Read MovieLens and split it: per user by default (model comparison), ``global`` for cold start.

    The per-user split holds out each user's last 20% of ratings for test and the 10% before
    for validation (ties in the reader's order: timestamp, then item id), so every test user is
    known; the global time split (train strictly before valid before test) is mostly new users.
    ``fractions`` (train, valid, test) override the split's shares. Train then gets
    ``cold_start_rows`` copies of each user's and item's first ratings with the id blanked, so
    new users and items meet a trained OOV row (``cold_start.py``). A missing release year
    becomes the training mean (the contract default), so frames carry no NaN while the model
    sees exactly what a cold-start client would send. ``history_len`` > 0 gives every row the
    user's last ``history_len`` liked films (label 1) rated strictly before it (``add_history``);
    ``prior_stats`` adds each row's user and item counts and like rates from strictly earlier
    ratings (``add_prior_stats``), computed on the whole log before the split, so a test row sees
    the ratings (of any split) that came before it and nothing after.
    """
    spec = split if isinstance(split, SplitSpec) else split_spec_with(SplitSpec(), split)
    if fractions is not None:
        _, valid, test = check_fractions(fractions)
        spec = SplitSpec(kind=spec.kind, valid=valid, test=test, seed=spec.seed)
    frame = read_movielens(path, rating_threshold=rating_threshold)
    if history_len:
        frame = add_history(frame, history_len, only_positive="label")
    if prior_stats:
        frame = add_prior_stats(frame, rating="rating")
    recipes = movielens_recipes(
        embedding_dim=embedding_dim, min_count=min_count, history_len=history_len, prior_stats=prior_stats
    )
    return build_splits(
        "movielens",
        frame,
        recipes,
        spec,
        source="movielens",
        id_columns=("user_id", "item_id"),
        cold_start_rows=cold_start_rows,
    )

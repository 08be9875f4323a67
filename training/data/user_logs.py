"""Load the user's own logs from a dataset spec: files -> typed frame -> split -> contract from train."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from training.features import Entity

from .base import DataError, Splits
from .contracts import FeatureRecipe
from .files import (
    column_type,
    infer_kind,
    labels,
    read_table,
    resolve_files,
    strings,
    timestamps,
    typed_column,
)
from .history import add_history
from .spec import DatasetSpec, FeatureSpec, read_spec
from .splits import SplitSpec, build_splits, split_spec_with


def recipes_for(spec: DatasetSpec, column_kinds: dict[str, str]) -> list[FeatureRecipe]:
    """Resolve each declared feature (ids first) to a recipe: stated values, else inferred or defaults."""
    names = [spec.user, spec.item] + [n for n in spec.features if n not in (spec.user, spec.item)]
    recipes = []
    for name in names:
        options = spec.features.get(name) or FeatureSpec()
        if name == spec.user:
            kind, entity = "categorical", Entity.USER
        elif name == spec.item:
            kind, entity = "categorical", Entity.ITEM
        else:
            kind = options.kind or infer_kind(column_kinds[name], options.separator)
            entity = Entity(options.entity or "context")
        recipes.append(
            FeatureRecipe(
                name=name,
                kind=kind,
                entity=entity,
                min_count=options.min_count or spec.defaults.min_count,
                max_vocab=options.max_vocab or spec.defaults.max_vocab,
                hash_buckets=options.hash_buckets,
                num_oov=options.num_oov,
                embedding_dim=options.embedding_dim or spec.defaults.embedding_dim,
                transform=options.transform or "none",
                max_len=options.max_len,
            )
        )
    return recipes


def read_logs(spec: DatasetSpec, base: Path) -> tuple[pd.DataFrame, list[FeatureRecipe]]:
    """Every file's rows (files in glob order, rows in file order) typed as the spec says."""
    feature_names = [n for n in spec.features if n not in (spec.user, spec.item)]
    needed = [spec.user, spec.item, spec.label, *([spec.timestamp] if spec.timestamp else []), *feature_names]
    paths = resolve_files(spec.files, base)
    tables = [read_table(p, needed, fmt=spec.format, csv_separator=spec.csv_separator) for p in paths]
    column_kinds = {name: column_type(tables, name) for name in feature_names}
    recipes = recipes_for(spec, column_kinds)
    parts = []
    for table in tables:
        if table.frame.empty:
            continue
        columns: dict[str, Any] = {}
        for recipe in recipes:
            if recipe.entity in (Entity.USER, Entity.ITEM) and recipe.name in (spec.user, spec.item):
                columns[recipe.name] = strings(table, recipe.name, required=True)
            else:
                separator = (spec.features.get(recipe.name) or FeatureSpec()).separator
                kind = column_kinds[recipe.name]
                columns[recipe.name] = typed_column(table, recipe.name, recipe.kind, kind, separator)
        columns["label"] = labels(table, spec.label)
        if spec.timestamp:
            columns["timestamp"] = timestamps(table, spec.timestamp)
        columns["user_id"], columns["item_id"] = columns[spec.user], columns[spec.item]
        parts.append(pd.DataFrame(columns))
    if not parts:
        raise DataError(f"files {spec.files}: no rows")
    frame = pd.concat(parts, ignore_index=True)
    if spec.history is not None:
        frame, recipe = with_history(frame, spec)
        recipes.append(recipe)
    return frame, recipes


def with_history(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, FeatureRecipe]:
    """``frame`` with the spec's history column (earlier clicks) and the sequence's recipe.

    Computed on every row before the split, which is safe: a row's history holds only events
    strictly earlier than it, so a test row sees what the ranker would have known then.
    """
    assert spec.history is not None
    name, max_len = spec.history.name, spec.history.max_len
    frame = add_history(frame, max_len, user=spec.user, item=spec.item, only_positive="label", column=name)
    return frame, FeatureRecipe(name, "sequence", Entity.USER, max_len=max_len, item_feature=spec.item)


def load_dataset_spec(
    path: str | os.PathLike[str], *, split: str | SplitSpec | None = None, **options: Any
) -> Splits:
    """Read the spec at ``path``, its files, split them and build the contract from train.

    Args:
        path: the YAML spec; its ``files`` are relative to its folder.
        split: override the spec's split kind (``global``, ``per-user``, ``random``).
        **options: none yet; unknown ones are an error rather than silently ignored.
    """
    if options:
        raise DataError(f"{path}: unknown options {sorted(options)} for a dataset spec")
    spec_path = Path(path)
    spec = read_spec(spec_path)
    frame, recipes = read_logs(spec, spec_path.resolve().parent)
    chosen = split_spec_with(spec.split, split)
    if chosen.kind != "random" and "timestamp" not in frame.columns:
        raise DataError(f"{spec_path}: a {chosen.kind} split needs a timestamp column")
    return build_splits(
        spec.name,
        frame,
        recipes,
        chosen,
        source=f"spec:{spec.name}",
        id_columns=(spec.user, spec.item),
        cold_start_rows=spec.defaults.cold_start_rows,
    )

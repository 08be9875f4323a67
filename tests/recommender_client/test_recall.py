"""Recall artefacts and sources against hand-computed values from the tiny logs (see conftest)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender_client.recall.artifacts import ArtifactError, RecallArtifacts, load_artifacts
from recommender_client.recall.build import BuildConfig, build_artifacts, item_cf, main
from recommender_client.recall.sources import (
    CategoryPopularityRecall,
    ItemCFRecall,
    NewItemRecall,
    PopularityRecall,
    merge_recall,
    recent_clicks,
)
from tests.recommender_client.conftest import DAY, T, tiny_contract, tiny_events, tiny_items, tiny_users


def ids(a: RecallArtifacts, positions) -> list[str]:
    return [a.catalog.item_ids[p] for p in positions]


def test_popularity_is_time_decayed_click_count(artifacts: RecallArtifacts) -> None:
    assert artifacts.as_of == T
    assert ids(artifacts, artifacts.popular_items) == [
        "i2",
        "i3",
        "i6",
        "i1",
    ]  # i3/i6 tie: lower position first
    np.testing.assert_allclose(artifacts.popular_scores, [2.0, 1.0, 1.0, 0.75], rtol=1e-6)
    assert artifacts.popularity_of()["i4"] == 0.0


def test_popularity_per_category(artifacts: RecallArtifacts) -> None:
    assert artifacts.category_names == ("a", "b", "c")
    per_cat = {}
    for k, name in enumerate(artifacts.category_names):
        lo, hi = artifacts.category_offsets[k], artifacts.category_offsets[k + 1]
        per_cat[name] = ids(artifacts, artifacts.category_items[lo:hi])
    assert per_cat == {"a": ["i2", "i1"], "b": ["i3"], "c": ["i6"]}


def test_item_cf_neighbours_and_similarities(artifacts: RecallArtifacts) -> None:
    i = artifacts.catalog.index
    row = artifacts.cf_neighbors[i["i2"]]
    assert ids(artifacts, row[row >= 0]) == ["i1", "i3", "i6"]
    np.testing.assert_allclose(
        artifacts.cf_scores[i["i2"]], [2 / math.sqrt(6), 1 / math.sqrt(3), 1 / math.sqrt(3)], rtol=1e-6
    )
    row = artifacts.cf_neighbors[i["i3"]]
    assert ids(artifacts, row[row >= 0]) == ["i2", "i1"]
    np.testing.assert_allclose(
        artifacts.cf_scores[i["i3"]][:2], [1 / math.sqrt(3), 0.5 / math.sqrt(2)], rtol=1e-6
    )
    assert artifacts.cf_neighbors[i["i4"]].tolist() == [-1, -1, -1]  # never clicked


def test_item_cf_keeps_last_click_and_truncates() -> None:
    # one user clicks 0, 1, 0: the sequence keeps the last click of 0 -> [1, 0], one pair at distance 1
    neighbors, scores = item_cf(np.array([0, 0, 0]), np.array([0, 1, 0]), 3, window=2, top_n=1)
    assert neighbors.tolist() == [[1], [0], [-1]]
    np.testing.assert_allclose(scores[:2, 0], [1.0, 1.0])


def test_history_keeps_newest_events_oldest_first(artifacts: RecallArtifacts) -> None:
    u2 = artifacts.user_index["u2"]
    lo, hi = artifacts.history_offsets[u2], artifacts.history_offsets[u2 + 1]
    assert ids(artifacts, artifacts.history_items[lo:hi]) == ["i1", "i4", "i2"]
    assert artifacts.history_clicked[lo:hi].tolist() == [True, False, True]
    short = build_artifacts(
        tiny_events(),
        contract=tiny_contract(),
        items=tiny_items(),
        config=BuildConfig(half_life_days=1.0, history_len=2),
    )
    u2 = short.user_index["u2"]
    lo, hi = short.history_offsets[u2], short.history_offsets[u2 + 1]
    assert ids(short, short.history_items[lo:hi]) == ["i4", "i2"]
    assert recent_clicks(artifacts, "u1", 2) == [artifacts.catalog.index["i3"], artifacts.catalog.index["i2"]]


def test_features_tables_follow_the_contract(artifacts: RecallArtifacts) -> None:
    assert sorted(artifacts.user_features) == ["age", "user_id"]
    assert artifacts.user_features["age"] == [20.0, 40.0, None]
    assert artifacts.user_features["user_id"] == ["u1", "u2", "u3"]  # the id column is the id feature
    assert artifacts.item_features["price"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert artifacts.item_features["tags"][5] == "t3|t1"


def test_round_trip_through_files(artifacts: RecallArtifacts, loaded: RecallArtifacts) -> None:
    assert loaded.catalog.item_ids == artifacts.catalog.item_ids
    assert loaded.catalog.tags == artifacts.catalog.tags
    np.testing.assert_array_equal(loaded.catalog.publish_time, artifacts.catalog.publish_time)
    for name in (
        "popular_items",
        "popular_scores",
        "cf_neighbors",
        "cf_scores",
        "history_offsets",
        "history_items",
        "history_times",
        "history_clicked",
        "category_items",
    ):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(artifacts, name))
    assert loaded.user_features == artifacts.user_features
    assert loaded.item_features == artifacts.item_features


def test_saved_files_are_world_readable_and_leave_no_temp_files(artifacts_dir: Path) -> None:
    files = sorted(p.name for p in artifacts_dir.iterdir())
    assert [n for n in files if n.startswith(".")] == []
    for name in ("manifest.json", "items.json", "users.json", "popularity.npz", "itemcf.npz", "history.npz"):
        assert (artifacts_dir / name).stat().st_mode & 0o777 == 0o644  # the service may run as another user


def test_items_only_in_the_log_take_their_newest_event_values(contract) -> None:
    events = tiny_events() | {"category": ["x"] * 9, "price": [float(k) for k in range(9)]}
    a = build_artifacts(events, contract=contract, config=BuildConfig(half_life_days=1.0))
    i2 = a.catalog.index["i2"]
    assert a.catalog.category[i2] == "x"
    assert a.item_features["price"][i2] == 5.0  # i2's newest event is row 5 (time T)
    assert math.isnan(a.catalog.publish_time[i2])


def test_popularity_recall_and_category_recall(loaded: RecallArtifacts) -> None:
    assert ids(loaded, PopularityRecall(loaded).recall("anyone", T, 2)) == ["i2", "i3"]
    # u1 clicked i3 (b), i2 (a), i1 (a): categories a (2 clicks) then b (1)
    assert ids(loaded, CategoryPopularityRecall(loaded, top_categories=2).recall("u1", T, 10)) == [
        "i2",
        "i3",
        "i1",
    ]
    assert CategoryPopularityRecall(loaded).recall("stranger", T, 10) == []


def test_item_cf_recall_scores_neighbours_of_recent_clicks(loaded: RecallArtifacts) -> None:
    # u2 seeds: i2 (weight 1), i1 (0.9): i3 = 1/sqrt(3) + 0.9 * 0.5/sqrt(2) = 0.896 > i6 = 1/sqrt(3)
    assert ids(loaded, ItemCFRecall(loaded).recall("u2", T, 10)) == ["i3", "i6"]
    assert ids(loaded, ItemCFRecall(loaded).recall("u2", T, 1)) == ["i3"]
    assert ItemCFRecall(loaded).recall("stranger", T, 10) == []


def test_new_item_recall_respects_age_and_publish_time(loaded: RecallArtifacts) -> None:
    recall = NewItemRecall(loaded, max_age_days=3)
    assert ids(loaded, recall.recall("u", T, 10)) == ["i5"]  # i6 is published at T + 1 day
    assert ids(loaded, recall.recall("u", T + 2 * DAY, 10)) == ["i6", "i5"]
    assert ids(loaded, recall.recall("u", T + 3.5 * DAY, 10)) == ["i6"]  # i5 is 4.5 days old


def test_merge_interleaves_dedupes_and_respects_quotas() -> None:
    lists = {"itemcf": [3, 6], "category": [2, 1], "new": [5], "popularity": [2, 3, 6, 1]}
    merged = merge_recall(lists, {"itemcf": 2, "category": 2, "new": 1, "popularity": 10}, max_total=10)
    assert merged.positions == (3, 2, 5, 6, 1)
    assert merged.sources == ("itemcf", "category", "new", "popularity", "category")
    capped = merge_recall(lists, {"itemcf": 1, "category": 1, "new": 0, "popularity": 10}, max_total=4)
    assert capped.positions == (3, 2, 6, 1)
    assert capped.sources == ("itemcf", "category", "popularity", "popularity")
    with pytest.raises(ValueError, match="no quota for sources \\['other'\\]"):
        merge_recall({"other": [1]}, {}, 3)


def test_bad_logs_are_named(contract) -> None:
    events = tiny_events()
    with pytest.raises(ArtifactError, match="missing columns \\['label'\\]"):
        build_artifacts({k: v for k, v in events.items() if k != "label"}, contract=contract)
    with pytest.raises(ArtifactError, match="column 'label', row 2: label must be 0 or 1"):
        build_artifacts(events | {"label": [1, 0, 7, 1, 0, 1, 1, 1, 0]}, contract=contract)
    with pytest.raises(ArtifactError, match="duplicate id 'i1' at row 1"):
        build_artifacts(events, contract=contract, items={"item_id": ["i1", "i1"]})


def test_corrupt_artifacts_are_named(artifacts_dir: Path) -> None:
    (artifacts_dir / "items.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="items.json: not valid JSON"):
        load_artifacts(artifacts_dir)
    with pytest.raises(ArtifactError, match="cannot read artefact .*manifest.json"):
        load_artifacts(artifacts_dir / "missing")


def test_cli_builds_from_parquet(tmp_path: Path, contract) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table(tiny_events()), data / "train.parquet")
    pq.write_table(pa.table(tiny_items()), data / "items.parquet")
    pq.write_table(pa.table(tiny_users()), data / "users.parquet")
    contract.save(tmp_path)
    assert (
        main(
            [
                "--data-dir",
                str(data),
                "--contract",
                str(tmp_path),
                "--out",
                str(tmp_path / "art"),
                "--half-life-days",
                "1",
                "--cf-neighbors",
                "3",
            ]
        )
        == 0
    )
    built = load_artifacts(tmp_path / "art")
    np.testing.assert_allclose(built.popular_scores, [2.0, 1.0, 1.0, 0.75], rtol=1e-6)
    assert (tmp_path / "art" / "feature_contract.json").is_file()
    assert (
        main(
            [
                "--data-dir",
                str(tmp_path / "nowhere"),
                "--contract",
                str(tmp_path),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def _merge_by_rounds(lists, quotas, max_total):
    """The merge's definition, spelled out: in each round every source still active takes its
    next item that no one has taken, until its quota, its list or ``max_total`` runs out."""
    cursors = {name: 0 for name in lists}
    used = {name: 0 for name in lists}
    out = []
    taken = set()
    while len(out) < max_total:
        took = False
        for name, items in lists.items():
            if len(out) == max_total or used[name] >= quotas[name]:
                continue
            while cursors[name] < len(items) and items[cursors[name]] in taken:
                cursors[name] += 1
            if cursors[name] < len(items):
                item = items[cursors[name]]
                taken.add(item)
                out.append((item, name))
                used[name] += 1
                took = True
        if not took:
            break
    return out


@settings(max_examples=300, deadline=None)
@given(
    lists=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(st.integers(0, 30), max_size=25),
        max_size=4,
    ),
    quota_values=st.lists(st.integers(0, 12), min_size=4, max_size=4),
    max_total=st.integers(0, 40),
)
def test_merge_recall_matches_the_round_by_round_definition(lists, quota_values, max_total):
    quotas = dict(zip(["a", "b", "c", "d"], quota_values, strict=True))
    merged = merge_recall(lists, quotas, max_total)
    assert list(zip(merged.positions, merged.sources, strict=True)) == _merge_by_rounds(lists, quotas, max_total)

"""MovieLens: GroupLens and RecBole readers agree, labels, features, time split, real data, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import DataError, load_source
from training.data.movielens import GENRES, age_bucket, load_movielens, movielens_contract, read_movielens
from training.features import Entity, FeatureContract, FeatureKind

# A tiny made-up catalogue (no MovieLens data): user -> (age, gender, occupation, zip)
USERS = {
    1: (24, "M", "technician", "85711"),
    2: (17, "F", "student", "94043"),
    3: (56, "M", "retired", "32067"),
}
# item -> (title, year or None, genres)
ITEMS = {
    10: ("Alpha Film", 1995, ["Animation", "Children's", "Comedy"]),
    11: ("Beta Story", 1977, ["Sci-Fi"]),
    12: ("unknown", None, ["unknown"]),
    13: ("Gamma Noir", 1947, ["Film-Noir", "Thriller"]),
}
# (user, item, rating, timestamp); out of time order on purpose
RATINGS = [
    (1, 10, 5, 1_000_030),
    (2, 11, 3, 1_000_000),
    (3, 12, 4, 1_000_090),
    (1, 11, 2, 1_000_010),
    (2, 13, 4, 1_000_050),
    (3, 10, 1, 1_000_070),
    (1, 13, 4, 1_000_080),
    (2, 10, 5, 1_000_020),
    (3, 11, 4, 1_000_040),
    (1, 12, 3, 1_000_060),
]


def write_grouplens(root: Path) -> Path:
    """u.data (tab), u.item (pipe, 19 genre flags, dates like 01-Jan-1995), u.user (pipe)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS))
    lines = []
    for item, (title, year, genres) in ITEMS.items():
        date = f"01-Jan-{year}" if year else ""
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        lines.append(
            f"{item}|{title} ({year})||{date}||http://example.invalid/{item}|{flags}\n".replace("||", "|", 1)
        )
    (root / "u.item").write_text("".join(lines), encoding="latin-1")
    (root / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|{z}\n" for u, (a, g, o, z) in USERS.items()))
    return root


def write_recbole(root: Path) -> Path:
    """ml.inter / ml.item / ml.user with typed headers, as in RecBole's dataset_example."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ml.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in reversed(RATINGS))
    )
    (root / "ml.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        + "".join(f"{i}\t{t}\t{y or 'unkonwn'}\t{' '.join(g)}\n" for i, (t, y, g) in ITEMS.items())
    )
    (root / "ml.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        + "".join(f"{u}\t{a}\t{g}\t{o}\t{z}\n" for u, (a, g, o, z) in USERS.items())
    )
    return root


def test_grouplens_fixture_has_the_grouplens_layout(tmp_path: Path) -> None:
    root = write_grouplens(tmp_path / "gl")
    first = (root / "u.item").read_text(encoding="latin-1").splitlines()[0].split("|")
    assert len(first) == 24 and first[2] == "01-Jan-1995" and first[3] == ""


def test_grouplens_and_recbole_agree(tmp_path: Path) -> None:
    grouplens = read_movielens(write_grouplens(tmp_path / "gl"))
    recbole = read_movielens(write_recbole(tmp_path / "rb"))
    pd.testing.assert_frame_equal(grouplens, recbole)
    a = load_movielens(tmp_path / "gl", fractions=(0.6, 0.2, 0.2))
    b = load_movielens(tmp_path / "rb", fractions=(0.6, 0.2, 0.2))
    assert a.contract == b.contract
    for left, right in ((a.train, b.train), (a.valid, b.valid), (a.test, b.test)):
        pd.testing.assert_frame_equal(left, right)


def test_rows_labels_and_features_by_hand(tmp_path: Path) -> None:
    frame = read_movielens(write_grouplens(tmp_path / "gl"))
    assert frame["timestamp"].tolist() == sorted(t for *_, t in RATINGS)
    first = frame.iloc[0]  # (2, 11, 3, 1_000_000)
    assert (first["user_id"], first["item_id"], first["label"]) == ("2", "11", 0)
    assert (first["age_bucket"], first["gender"], first["occupation"]) == (1, "F", "student")
    assert (first["genres"], first["release_year"]) == ("Sci-Fi", 1977.0)
    assert first["hour"] == (1_000_000 // 3600) % 24
    assert frame["label"].tolist() == [int(r >= 4) for *_, r, _ in sorted(RATINGS, key=lambda x: x[3])]
    alpha = frame[frame["item_id"] == "10"].iloc[0]
    assert alpha["genres"] == "Animation|Children's|Comedy"
    assert np.isnan(frame[frame["item_id"] == "12"]["release_year"]).all()
    np.testing.assert_array_equal(
        age_bucket(np.array([1, 17, 18, 24, 25, 44, 45, 49, 50, 55, 56, 90])),
        [1, 1, 18, 18, 25, 35, 45, 45, 50, 50, 56, 56],
    )


def test_time_split_never_trains_on_the_future(tmp_path: Path) -> None:
    splits = load_movielens(
        write_grouplens(tmp_path / "gl"), split="global", fractions=(0.6, 0.2, 0.2), cold_start_rows=0
    )
    assert splits.sizes() == {"train": 6, "valid": 2, "test": 2}
    assert splits.train["timestamp"].max() < splits.valid["timestamp"].min()
    assert splits.valid["timestamp"].max() < splits.test["timestamp"].min()
    # the unknown year is filled with the training mean (the contract's default)
    years = [
        y
        for (_, i, _, t) in sorted(RATINGS, key=lambda x: x[3])[:6]
        for j, (_, y, _) in ITEMS.items()
        if j == i and y
    ]
    assert splits.contract["release_year"].mean == pytest.approx(np.mean(years))
    unknown = pd.concat([splits.train, splits.valid, splits.test]).query("item_id == '12'")
    assert (unknown["release_year"] == np.float32(splits.contract["release_year"].mean)).all()


def test_contract_entities_and_json(tmp_path: Path) -> None:
    splits = load_movielens(write_grouplens(tmp_path / "gl"), fractions=(0.6, 0.2, 0.2), cold_start_rows=0)
    contract = splits.contract
    assert [(f.name, f.entity) for f in contract.features] == [
        ("user_id", Entity.USER), ("age_bucket", Entity.USER), ("gender", Entity.USER),
        ("occupation", Entity.USER), ("item_id", Entity.ITEM), ("genres", Entity.ITEM),
        ("release_year", Entity.ITEM), ("hour", Entity.CONTEXT),
    ]  # fmt: skip
    assert contract["genres"].kind is FeatureKind.MULTI_CATEGORICAL
    assert contract["age_bucket"].kind is FeatureKind.CATEGORICAL_INT
    assert set(contract["item_id"].vocabulary) == set(splits.train["item_id"])
    assert FeatureContract.from_json(contract.to_json()) == contract
    assert movielens_contract(splits.train) == contract


def test_real_ml100k(movielens_dir: Path) -> None:
    splits = load_source("movielens", movielens_dir, split="global", cold_start_rows=0)
    everything = pd.concat([splits.train, splits.valid, splits.test], ignore_index=True)
    assert len(everything) == 100_000
    assert everything["user_id"].nunique() == 943 and everything["item_id"].nunique() == 1_682
    assert everything["label"].sum() == 34_174 + 21_201
    assert splits.train["timestamp"].max() < splits.valid["timestamp"].min()
    assert splits.valid["timestamp"].max() < splits.test["timestamp"].min()
    assert abs(len(splits.train) - 80_000) < 50
    assert set(splits.contract["genres"].vocabulary) <= set(GENRES)
    assert not everything["release_year"].isna().any()
    assert everything.loc[everything["item_id"] == "1412", "release_year"].iloc[0] == 1995


def test_real_ml100k_default_per_user_split_with_cold_start_rows(movielens_dir: Path) -> None:
    raw = load_source("movielens", movielens_dir, cold_start_rows=0)
    splits = load_source("movielens", movielens_dir)
    assert "per-user" in splits.split and set(splits.test["user_id"]) <= set(raw.train["user_id"])
    # every user has >= 20 ratings: test gets floor(20%), valid floor(10%) of each user's ratings
    counts = pd.concat([raw.train, raw.valid, raw.test])["user_id"].value_counts()
    assert len(raw.test) == sum(int(n * 0.2) for n in counts) and len(raw.valid) == sum(
        int(n * 0.1) for n in counts
    )
    # copies: each user's and item's first 2 training ratings (fewer if it has fewer), id blanked
    items = raw.train["item_id"].value_counts()
    expected = 2 * raw.train["user_id"].nunique() + int(np.minimum(items, 2).sum())
    assert len(splits.train) == len(raw.train) + expected
    copies = splits.train.iloc[len(raw.train) :]
    assert ((copies["user_id"] == "") ^ (copies["item_id"] == "")).all()
    assert splits.contract == raw.contract  # vocabularies and statistics from the real rows only


@pytest.mark.parametrize(
    ("fmt", "file", "content", "message"),
    [
        ("gl", "u.data", "1\t10\t5\n", r"u\.data: line 1: expected 4 fields, saw 3"),
        ("gl", "u.data", "1\t10\t5\t1000\n1\t11\tfive\t1001\n", r"u\.data: column 'rating', line 2: unparsable number 'five'"),
        ("gl", "u.data", "1\t10\t5\t1000\n1\t11\t4\t\n", r"u\.data: column 'timestamp', line 2: missing value"),
        ("gl", "u.data", "", r"u\.data: file is empty"),
        ("gl", "u.data", "9\t10\t5\t1000\n", r"u\.data: column 'user_id', row 0: '9' is not in .*u\.user"),
        ("gl", "u.user", "1|old|M|x|1\n", r"u\.user: column 'age', line 1: unparsable integer 'old'"),
        ("rb", "ml.inter", "user_id:token\titem_id:token\trating:float\n1\t10\t5\n", r"ml\.inter: missing column 'timestamp'"),
        ("rb", "ml.inter", "user_id\titem_id:token\trating:float\ttimestamp:float\n", r"ml\.inter: line 1: header field 1 'user_id'"),
        ("rb", "ml.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n10\tX\t19x5\tDrama\n",
         r"ml\.item: column 'release_year', line 2: expected a 4-digit year, got '19x5'"),
        ("rb", "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t1000\t7\n",
         r"ml\.inter: line 2: expected 4 fields, saw 5"),
    ],
)  # fmt: skip
def test_bad_files_name_file_column_and_line(
    tmp_path: Path, fmt: str, file: str, content: str, message: str
) -> None:
    root = write_grouplens(tmp_path / fmt) if fmt == "gl" else write_recbole(tmp_path / fmt)
    (root / file).write_text(content)
    with pytest.raises(DataError, match=message):
        load_movielens(root)


def test_bad_genre_flag_and_missing_directory(tmp_path: Path) -> None:
    root = write_grouplens(tmp_path / "gl")
    lines = (root / "u.item").read_text(encoding="latin-1").splitlines()
    lines[1] = lines[1][:-1] + "2"
    (root / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(
        DataError, match=r"u\.item: column 'genre Western', line 2: flag must be 0 or 1, got 2"
    ):
        load_movielens(root)
    with pytest.raises(DataError, match="MovieLens directory not found"):
        load_movielens(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither RecBole atomic files"):
        load_movielens(tmp_path / "empty")

"""Dataset spec: Parquet and CSV logs load with inferred kinds; errors name file, column, row or line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data import DataError, load_source
from training.data.spec import read_spec
from training.features import Entity, FeatureKind

# 12 events of 3 users: user u0 has events at t=1..4, u1 at t=2..5, u2 at t=3..6.
EVENTS = pd.DataFrame(
    {
        "uid": [f"u{i % 3}" for i in range(12)],
        "movie": ["m1", "m2", "m1", "m3", "m1", "m2", "m4", "m1", "m2", "m5", "m1", "m6"],
        "clicked": [1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0],
        "ts": [1 + (i // 3) + (i % 3) for i in range(12)],
        "price": [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0],
        "shelf": [3, 1, 3, 2, 3, 1, 2, 3, 1, 2, 3, 1],
        "device": ["ios", "web", "ios", "web", "and", "ios", "web", "ios", "and", "web", "ios", "web"],
        "tags": ["a;b", "b", "a", "", "c;a", "b", "a;b;c", "a", "b", "c", "a", "b"],
    }
)
SPEC = """
name: shop
files: [{files}]
label: clicked
timestamp: ts
user: uid
item: movie
features:
  price:
  shelf:
    entity: item
  device: {min_count: 1}
  tags: {separator: ";", entity: item, min_count: 1}
defaults: {min_count: 2, embedding_dim: 4, cold_start_rows: 0}
split: {kind: per-user, test_last_n: 1, valid_last_n: 1}
"""


def write_spec(folder: Path, files: str, text: str = SPEC) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text.replace("{files}", files))
    return path


def test_parquet_spec_infers_kinds_and_builds_contract_from_train(tmp_path: Path) -> None:
    EVENTS.iloc[:6].to_parquet(tmp_path / "part-0.parquet", index=False)
    EVENTS.iloc[6:].to_parquet(tmp_path / "part-1.parquet", index=False)
    splits = load_source(str(write_spec(tmp_path, "'part-*.parquet'")))
    contract = splits.contract
    kinds = {f.name: (f.kind, f.entity) for f in contract.features}
    assert kinds == {
        "uid": (FeatureKind.CATEGORICAL_STRING, Entity.USER),
        "movie": (FeatureKind.CATEGORICAL_STRING, Entity.ITEM),
        "price": (FeatureKind.NUMERIC, Entity.CONTEXT),
        "shelf": (FeatureKind.CATEGORICAL_INT, Entity.ITEM),
        "device": (FeatureKind.CATEGORICAL_STRING, Entity.CONTEXT),
        "tags": (FeatureKind.MULTI_CATEGORICAL, Entity.ITEM),
    }
    # each user's last event to test, the one before to valid: users have 4 events -> 2 train each
    assert splits.sizes() == {"train": 6, "valid": 3, "test": 3}
    assert sorted(splits.test["timestamp"]) == [4, 5, 6]
    train = splits.train
    assert sorted(zip(train["uid"], train["timestamp"], strict=True)) == [
        ("u0", 1), ("u0", 2), ("u1", 2), ("u1", 3), ("u2", 3), ("u2", 4)
    ]  # fmt: skip
    # train movies (rows 0-5): m1 x3, m2 x2, m3 x1 -> min_count 2 keeps m1, m2
    assert contract["movie"].vocabulary == ("m1", "m2")
    assert contract["movie"].embedding_dim == 4
    assert contract["price"].mean == pytest.approx(np.mean([1.5, 2.0, 2.5, 3.0, 3.5, 4.0]))
    # tags of train rows "a;b","b","a","","c;a","b" -> a 3, b 3, c 1 (min_count 1), wired as "|"
    assert contract["tags"].vocabulary == ("a", "b", "c")
    assert splits.train["tags"].tolist()[:2] == ["a|b", "b"]
    assert splits.train["user_id"].tolist() == splits.train["uid"].tolist()
    assert splits.train["label"].dtype == np.int64


def test_csv_spec_reads_the_same_rows(tmp_path: Path) -> None:
    EVENTS.to_csv(tmp_path / "log.csv", index=False)
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    from_csv = load_source(str(write_spec(tmp_path, "log.csv")))
    from_parquet = load_source(str(write_spec(tmp_path, "log.parquet")))
    assert from_csv.contract == from_parquet.contract
    for a, b in zip(
        (from_csv.train, from_csv.valid, from_csv.test),
        (from_parquet.train, from_parquet.valid, from_parquet.test),
        strict=True,
    ):
        pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_stated_kind_overrides_inference(tmp_path: Path) -> None:
    EVENTS.to_csv(tmp_path / "log.csv", index=False)
    text = SPEC.replace("  shelf:\n    entity: item", "  shelf:\n    kind: numeric\n    transform: log1p")
    splits = load_source(str(write_spec(tmp_path, "log.csv", text)), split="random")
    assert splits.contract["shelf"].kind is FeatureKind.NUMERIC
    assert splits.contract["shelf"].transform == "log1p"
    assert "random split" in splits.split


@pytest.mark.parametrize(
    ("column", "value", "row", "message"),
    [
        ("clicked", "2", 4, r"log\.csv: column 'clicked', line 6: label must be 0 or 1, got 2\.0"),
        ("price", "cheap", 7, r"log\.csv: column 'price', line 9: unparsable number 'cheap'"),
        ("ts", "", 0, r"log\.csv: column 'ts', line 2: missing value"),
        ("uid", "", 3, r"log\.csv: column 'uid', line 5: missing value"),
    ],
)
def test_bad_csv_values_name_file_column_and_line(
    tmp_path: Path, column: str, value: str, row: int, message: str
) -> None:
    frame = EVENTS.astype(str)
    frame.loc[row, column] = value
    frame.to_csv(tmp_path / "log.csv", index=False)
    text = SPEC.replace("  shelf:\n    entity: item", "  shelf: {kind: categorical}").replace(
        "  price:\n", "  price: {kind: numeric}\n"
    )
    with pytest.raises(DataError, match=message):
        load_source(str(write_spec(tmp_path, "log.csv", text)))


def test_bad_parquet_label_names_file_and_row(tmp_path: Path) -> None:
    EVENTS.iloc[:6].to_parquet(tmp_path / "a.parquet", index=False)
    EVENTS.iloc[6:].assign(clicked=[1, 0, 1, 0, 3, 0]).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(
        DataError, match=r"b\.parquet: column 'clicked', row 4: label must be 0 or 1, got 3\.0"
    ):
        load_source(str(write_spec(tmp_path, "'*.parquet'")))


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    EVENTS.to_parquet(tmp_path / "a.parquet", index=False)
    EVENTS.drop(columns=["price"]).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(DataError, match=r"b\.parquet: missing column\(s\) \['price'\]"):
        load_source(str(write_spec(tmp_path, "'*.parquet'")))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("  price:\n", "  price: {colour: red}\n"),
            r"spec\.yaml: line 9: features\.price\.colour: unknown key",
        ),
        (("name: shop", "name: shop\nlabels: x"), r"spec\.yaml: line 3: labels: unknown key"),
        (("kind: per-user", "kind: weekly"), r"line 15: split\.kind: Input should be 'global', 'per-user'"),
        (("user: uid", "user: user id"), r"line 6: user: column name 'user id' must match"),
        (
            ("  device: {min_count: 1}", "  device: {kind: numeric, min_count: 1}"),
            r"line 12: features\.device: .*numeric",
        ),
    ],
)
def test_bad_spec_keys_are_located(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write_spec(tmp_path, "log.csv", SPEC.replace(*edit))
    with pytest.raises(DataError, match=message):
        read_spec(path)


def test_unmatched_pattern_and_too_few_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pattern 'nothing-\*\.csv' matches no file"):
        load_source(str(write_spec(tmp_path, "'nothing-*.csv'")))


def test_recsys_train_from_a_spec_end_to_end(tmp_path: Path) -> None:
    from training.cli import main

    rng = np.random.default_rng(0)
    n = 600
    users = rng.integers(0, 30, n)
    items = rng.integers(0, 20, n)
    frame = pd.DataFrame(
        {
            "uid": [f"u{u}" for u in users],
            "movie": [f"m{i}" for i in items],
            "clicked": (rng.random(n) < 0.2 + 0.5 * (items % 2)).astype(int),
            "ts": np.arange(n),
            "price": rng.random(n).round(3),
            "shelf": items % 4,
            "device": rng.choice(["ios", "web"], n),
            "tags": rng.choice(["a;b", "b", "c"], n),
        }
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    spec = write_spec(
        tmp_path, "log.csv", SPEC.replace("test_last_n: 1, valid_last_n: 1", "test: 0.2, valid: 0.1")
    )
    out = tmp_path / "run"
    code = main(
        [
            "--data",
            str(spec),
            "--out",
            str(out),
            "--model",
            "lr",
            "--epochs",
            "1",
            "--quiet",
            "--batch-size",
            "16",
            "--learning-rate",
            "0.05",
        ]
    )
    assert code == 0
    for name in ("model.keras", "feature_contract.json", "config.json", "metrics.json", "train_log.csv"):
        assert (out / name).is_file(), name
    contract = json.loads((out / "feature_contract.json").read_text())
    assert [f["name"] for f in contract["features"]] == ["uid", "movie", "price", "shelf", "device", "tags"]
    assert json.loads((out / "config.json").read_text())["data"] == str(spec)
    # odd items click far more often: even a 1-epoch LR ranks validation better than chance
    assert json.loads((out / "metrics.json").read_text())["best_val_auc"] > 0.6
    # recsys-evaluate finds the spec in config.json; its report states the split and cold shares
    from training.evaluate import main as evaluate_main

    assert evaluate_main(["--model", str(out), "--out", str(tmp_path / "eval")]) == 0
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "per-user time split (last 20% of each user's events to test" in report
    assert "0.0% of rows with a new user" in report


def test_the_documented_example_spec_loads() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "dataset_spec"
    splits = load_source(str(root / "spec.yaml"))
    kinds = {f.name: f.kind.value for f in splits.contract.features}
    assert kinds == {
        "customer": "categorical_string",
        "product": "categorical_string",
        "category": "categorical_string",
        "tags": "multi_categorical",
        "price": "numeric",
        "device": "categorical_string",
    }
    raw = pd.read_csv(root / "events.csv")
    per_user = raw.groupby("customer").size()
    assert len(splits.test) == sum(max(1, int(n * 0.2)) for n in per_user)
    assert set(splits.train["tags"].str.split("|").explode()) <= {"new", "sale", "gift", "eco"}
    assert splits.contract["price"].transform == "log1p"


def test_recsys_train_reports_a_bad_spec_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import main

    EVENTS.assign(clicked=["yes"] + [0] * 11).to_csv(tmp_path / "log.csv", index=False)
    spec = write_spec(tmp_path, "log.csv")
    assert main(["--data", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "recsys-train: error:" in err and "log.csv: column 'clicked', line 2: unparsable number 'yes'" in err
    )
    assert "Traceback" not in err
    assert main(["--data", "criteo", "--split", "random", "--out", str(tmp_path / "run")]) == 2
    assert "--split applies to movielens and dataset specs, not 'criteo'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: neither a built-in source nor a .yaml spec
        main(["--data", "clicks.json", "--out", str(tmp_path / "run")])
    assert "or give a dataset spec .yaml" in capsys.readouterr().err


def test_hash_buckets_max_vocab_and_cold_start_rows(tmp_path: Path) -> None:
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    text = SPEC.replace("  price:\n", "  price:\n  movie: {hash_buckets: 64}\n  uid: {max_vocab: 2}\n")
    text = text.replace("cold_start_rows: 0", "cold_start_rows: 1").replace(
        "  device: {min_count: 1}", "  device: {}"
    )
    splits = load_source(str(write_spec(tmp_path, "log.parquet", text)))
    assert (splits.contract["movie"].hash_buckets, splits.contract["movie"].vocabulary) == (64, None)
    # three train users exceed max_vocab 2: hashed into the next power of two above 2 x 3
    assert (splits.contract["uid"].hash_buckets, splits.contract["uid"].vocabulary) == (8, None)
    # device keeps a vocabulary but is no id: no copies; both ids hashed: no copies at all
    assert len(splits.train) == 6
    only_items_hashed = text.replace("  uid: {max_vocab: 2}\n", "")
    splits = load_source(str(write_spec(tmp_path, "log.parquet", only_items_hashed)))
    copies = splits.train.iloc[6:]  # each of the 3 users' first training event, its id blanked
    assert copies["uid"].tolist() == ["", "", ""] and sorted(copies["timestamp"]) == [1, 2, 3]
    assert sorted(copies["user_id"]) == ["u0", "u1", "u2"]  # the evaluation's id column is kept


def test_history_key_adds_earlier_clicks_as_a_sequence(tmp_path: Path) -> None:
    EVENTS.to_parquet(tmp_path / "log.parquet", index=False)
    text = SPEC + "history: {max_len: 2}\n"
    splits = load_source(str(write_spec(tmp_path, "log.parquet", text)))
    rows = pd.concat([splits.train, splits.valid, splits.test])
    got = {(u, int(t)): h for u, t, h in zip(rows["uid"], rows["timestamp"], rows["history"], strict=True)}
    # By hand from EVENTS: only clicked rows enter, strictly earlier ones, newest first, at most 2.
    # u0 clicks m1 at t1 only; u1 clicks m1 at t3 and t5; u2 clicks m1 (t3), m2 (t4), m2 (t5).
    assert got == {
        ("u0", 1): "", ("u0", 2): "m1", ("u0", 3): "m1", ("u0", 4): "m1",
        ("u1", 2): "", ("u1", 3): "", ("u1", 4): "m1", ("u1", 5): "m1",
        ("u2", 3): "", ("u2", 4): "m1", ("u2", 5): "m2|m1", ("u2", 6): "m2|m2",
    }  # fmt: skip
    (history,) = splits.contract.sequences
    movie = next(f for f in splits.contract.features if f.name == "movie")
    assert history.name == "history" and history.item_feature == "movie" and history.max_len == 2
    assert history.vocabulary == movie.vocabulary and history.entity is Entity.USER


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("timestamp: ts\n", ""), r"history needs a timestamp column"),
        (("history: {max_len: 2}", "history: {name: price}"), r"history name 'price' is already"),
        (("history: {max_len: 2}", "history: {max_len: 0}"), r"line 16: history\.max_len"),
    ],
)
def test_bad_history_keys_are_refused(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = SPEC.replace("split: {kind: per-user, test_last_n: 1, valid_last_n: 1}", "split: {kind: random}")
    text += "history: {max_len: 2}\n"
    with pytest.raises(DataError, match=message):
        read_spec(write_spec(tmp_path, "log.csv", text.replace(*edit)))


def test_din_trains_from_a_spec_with_history(tmp_path: Path) -> None:
    from training.cli import main

    rng = np.random.default_rng(1)
    n = 400
    frame = EVENTS.sample(n, replace=True, random_state=1).reset_index(drop=True)
    frame = frame.assign(uid=[f"u{u}" for u in rng.integers(0, 20, n)], ts=np.arange(n))
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    text = (
        SPEC.replace("test_last_n: 1, valid_last_n: 1", "test: 0.2, valid: 0.1") + "history: {max_len: 5}\n"
    )
    out = tmp_path / "run"
    args = ["--data", str(write_spec(tmp_path, "log.parquet", text)), "--out", str(out), "--model", "din"]
    assert main([*args, "--epochs", "1", "--quiet", "--batch-size", "32"]) == 0
    contract = json.loads((out / "feature_contract.json").read_text())
    (history,) = [f for f in contract["features"] if f["kind"] == "sequence"]
    assert history["item_feature"] == "movie" and history["max_len"] == 5
    # without the key there is nothing to attend over: a one-line error, before any training
    no_history = write_spec(tmp_path, "log.parquet", text.replace("history: {max_len: 5}\n", ""))
    args = ["--data", str(no_history), "--out", str(tmp_path / "bare"), "--model", "din", "--quiet"]
    assert main(args) == 2 and not (tmp_path / "bare" / "model.keras").exists()

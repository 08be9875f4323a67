"""recsys-batch-score's local backend: scores, contract checks, defaults, atomic output (issue 16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from export.batch_cli import main
from export.batch_input import discover_inputs
from export.batch_job import SUCCESS_MARKER, BatchScoreConfig, score_local
from export.batch_model import BatchScorer, resolve_version_dir
from export.batches import frame_inputs
from export.errors import ContractMismatchError, ExportError
from tests.export.conftest import tiny_frame


def write_parquet(frame: pd.DataFrame, path: Path, *, row_group_size: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


def config(exported: Path, inputs: list[Path], output: Path, **extra) -> BatchScoreConfig:
    files, fmt = discover_inputs([str(p) for p in inputs])
    return BatchScoreConfig(
        version_dir=exported, inputs=tuple(files), input_format=fmt, output=output, progress=False, **extra
    )


def read_output(folder: Path) -> pd.DataFrame:
    assert (folder / SUCCESS_MARKER).is_file()
    parts = sorted(folder.glob("part-*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def no_temporaries(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out = tiny_frame(5_000, seed=7)
    out.insert(0, "row_id", np.arange(len(out), dtype=np.int64))
    return out


def test_scores_match_the_signature_and_keep_pass_through_columns(
    exported, loaded, contract, frame, tmp_path
):
    source = write_parquet(frame, tmp_path / "in" / "day.parquet")
    rows = score_local(config(exported, [source], tmp_path / "out", passthrough=("row_id", "label")))
    out = read_output(tmp_path / "out")
    assert rows == len(frame) and list(out.columns) == ["row_id", "label", "score"]
    assert out["row_id"].tolist() == frame["row_id"].tolist()
    assert out["label"].tolist() == frame["label"].tolist()
    # the signature's own output, called directly on the whole table in one go
    import tensorflow as tf

    inputs = frame_inputs(frame, contract)
    tensors = {k: tf.constant(v if v.dtype != object else v.astype(str)) for k, v in inputs.items()}
    direct = loaded.signatures["serving_default"](**tensors)["ctr"].numpy().reshape(-1)
    np.testing.assert_allclose(out["score"].to_numpy(), direct, rtol=1e-5, atol=1e-6)
    assert out["score"].dtype == np.float32 and no_temporaries(tmp_path)


def test_scores_do_not_depend_on_how_rows_are_batched(exported, frame, tmp_path):
    source = write_parquet(frame, tmp_path / "in" / "day.parquet")
    score_local(config(exported, [source], tmp_path / "big", batch_rows=65_536))
    score_local(config(exported, [source], tmp_path / "small", batch_rows=333))
    big, small = read_output(tmp_path / "big"), read_output(tmp_path / "small")
    assert np.array_equal(big["score"].to_numpy(), small["score"].to_numpy())  # bit for bit


def test_a_loaded_scorer_is_reused_and_must_match_the_job(exported, frame, tmp_path):
    source = write_parquet(frame, tmp_path / "in" / "day.parquet")
    score_local(config(exported, [source], tmp_path / "fresh", chunk_rows=512))
    scorer = BatchScorer.load(exported, chunk_rows=512)
    for name in ("reused", "again"):  # one load, two jobs, the bits of the job that loads its own
        score_local(config(exported, [source], tmp_path / name, chunk_rows=512), scorer=scorer)
        assert np.array_equal(
            read_output(tmp_path / name)["score"].to_numpy(),
            read_output(tmp_path / "fresh")["score"].to_numpy(),
        )
    with pytest.raises(ExportError, match="the given scorer is .* at 512 rows per call"):
        score_local(config(exported, [source], tmp_path / "other", chunk_rows=1024), scorer=scorer)
    assert not (tmp_path / "other").exists() and no_temporaries(tmp_path)


def test_float64_and_int32_columns_are_cast_and_csv_reads_like_parquet(exported, frame, tmp_path):
    wide = frame.astype({"price": np.float64})
    write_parquet(wide, tmp_path / "wide" / "a.parquet")
    frame.to_csv(tmp_path / "day.csv", index=False)
    score_local(config(exported, [tmp_path / "wide"], tmp_path / "out_wide"))
    score_local(config(exported, [tmp_path / "day.csv"], tmp_path / "out_csv"))
    write_parquet(frame, tmp_path / "narrow.parquet")
    score_local(config(exported, [tmp_path / "narrow.parquet"], tmp_path / "out_narrow"))
    narrow = read_output(tmp_path / "out_narrow")["score"].to_numpy()
    assert np.array_equal(read_output(tmp_path / "out_wide")["score"].to_numpy(), narrow)
    assert np.array_equal(read_output(tmp_path / "out_csv")["score"].to_numpy(), narrow)


def test_contract_errors_name_the_column_and_leave_no_output(exported, frame, tmp_path):
    write_parquet(frame.drop(columns=["price"]), tmp_path / "missing.parquet")
    with pytest.raises(ContractMismatchError, match=r"missing\.parquet: missing columns \['price'\]"):
        score_local(config(exported, [tmp_path / "missing.parquet"], tmp_path / "out"))
    write_parquet(frame.astype({"item": str}), tmp_path / "typed.parquet")
    with pytest.raises(
        ContractMismatchError,
        match=r"typed\.parquet: column 'item' is (large_)?string, the contract wants int64",
    ):
        score_local(config(exported, [tmp_path / "typed.parquet"], tmp_path / "out"))
    nulls = frame.astype({"price": "float32"}).copy()
    nulls.loc[1234, "price"] = np.nan
    table = pa.Table.from_pandas(nulls, preserve_index=False)  # NaN from pandas becomes null here
    pq.write_table(table, tmp_path / "nulls.parquet", row_group_size=1000)
    with pytest.raises(ContractMismatchError, match=r"nulls\.parquet: column 'price', row 1234: null"):
        score_local(config(exported, [tmp_path / "nulls.parquet"], tmp_path / "out"))
    assert not (tmp_path / "out").exists() and no_temporaries(tmp_path)


def test_fill_defaults_uses_the_contracts_cold_start_values(exported, contract, frame, tmp_path):
    holes = frame.head(200).copy()
    holes["city"] = holes["city"].astype(object)
    holes.loc[[3, 50], "city"] = None
    write_parquet(holes.drop(columns=["tags"]), tmp_path / "holes.parquet")
    score_local(config(exported, [tmp_path / "holes.parquet"], tmp_path / "filled", fill_defaults=True))
    by_hand = holes.copy()
    by_hand.loc[[3, 50], "city"] = contract["city"].default
    by_hand["tags"] = contract["tags"].default
    write_parquet(by_hand, tmp_path / "by_hand.parquet")
    score_local(config(exported, [tmp_path / "by_hand.parquet"], tmp_path / "expected"))
    filled = read_output(tmp_path / "filled")["score"].to_numpy()
    assert np.array_equal(filled, read_output(tmp_path / "expected")["score"].to_numpy())


def test_a_failure_midway_leaves_nothing_that_looks_finished(exported, frame, tmp_path):
    good = frame.head(3000)
    bad = frame.tail(100).copy()
    bad["price"] = bad["price"].astype(object)
    bad.iloc[5, bad.columns.get_loc("price")] = ""
    good.to_csv(tmp_path / "a.csv", index=False)
    bad.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(ContractMismatchError, match=r"b\.csv: column 'price', row 5: null"):
        score_local(config(exported, [tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "out"))
    assert not (tmp_path / "out").exists() and no_temporaries(tmp_path)


def test_existing_output_needs_overwrite(exported, frame, tmp_path):
    source = write_parquet(frame.head(10), tmp_path / "in.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(ExportError, match="exists; pass --overwrite"):
        score_local(config(exported, [source], tmp_path / "out"))
    score_local(config(exported, [source], tmp_path / "out", overwrite=True))
    assert not (tmp_path / "out" / "old.txt").exists() and len(read_output(tmp_path / "out")) == 10
    assert no_temporaries(tmp_path)


def test_a_base_path_picks_the_latest_blessed_version(exported, tmp_path):
    base = tmp_path / "base"
    for version in (1, 2, 3):
        shutil.copytree(exported, base / "ctr" / str(version))
    with pytest.raises(ExportError, match="no blessed version"):
        resolve_version_dir(base, name="ctr")
    for version, decision in ((1, "blessed"), (2, "blessed"), (3, "rejected")):
        (base / "ctr" / f"{version}.blessing.json").write_text(json.dumps({"decision": decision}))
    assert resolve_version_dir(base, name="ctr") == base / "ctr" / "2"
    assert resolve_version_dir(base, name="ctr", version="3") == base / "ctr" / "3"
    with pytest.raises(ExportError, match="give a version directory, or a base path and --model-name"):
        resolve_version_dir(base)


def test_cli_scores_and_reports_errors_in_one_line(exported, frame, tmp_path, capsys):
    source = write_parquet(frame.head(50), tmp_path / "in.parquet")
    assert (
        main(
            [
                "--model",
                str(exported),
                "--input",
                str(source),
                "--output",
                str(tmp_path / "o"),
                "--keep",
                "row_id",
                "--quiet",
            ]
        )
        == 0
    )
    assert "scored 50 rows" in capsys.readouterr().out
    assert read_output(tmp_path / "o")["row_id"].tolist() == list(range(50))
    assert (
        main(
            ["--model", str(exported), "--input", str(tmp_path / "nothing"), "--output", str(tmp_path / "p")]
        )
        == 1
    )
    assert "no Parquet or CSV file found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "--fill-defaults" in capsys.readouterr().out


def test_every_input_is_checked_before_the_first_row_is_scored(exported, frame, tmp_path):
    frame.head(3000).to_csv(tmp_path / "a.csv", index=False)
    frame.tail(100).drop(columns=["city"]).to_csv(tmp_path / "b.csv", index=False)
    scored: list[int] = []
    with pytest.raises(ContractMismatchError, match=r"b\.csv: .*city"):
        # small batches: a.csv alone is more batches than the reader prefetches, so rows of it
        # would be scored before b.csv is read if the header were not checked first
        job = config(exported, [tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "out", batch_rows=100)
        score_local(job, on_rows=scored.append)
    assert scored == [] and not (tmp_path / "out").exists() and no_temporaries(tmp_path)


def test_a_string_feature_passed_through_is_written_as_plain_strings(exported, frame, tmp_path):
    # the reader decodes string features as dictionaries; the output holds their values, the
    # type the Spark backend writes too
    source = write_parquet(frame, tmp_path / "in" / "day.parquet")
    score_local(config(exported, [source], tmp_path / "out", passthrough=("user",)))
    (part,) = (tmp_path / "out").glob("part-*.parquet")
    assert pq.read_schema(part).field("user").type == pa.string()
    assert read_output(tmp_path / "out")["user"].tolist() == frame["user"].tolist()

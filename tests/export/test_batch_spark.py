"""recsys-batch-score on a real Spark session (local[2]): the same bits as the local backend (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from export.batch_job import score_local
from export.batch_spark import score_spark
from export.errors import ExportError
from tests.export.conftest import tiny_frame
from tests.export.test_batch_score import config, no_temporaries, read_output, write_parquet

pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out = tiny_frame(6_000, seed=11)
    out.insert(0, "row_id", np.arange(len(out), dtype=np.int64))
    return out


def test_spark_and_local_write_the_same_scores(spark, exported, frame, tmp_path: Path) -> None:
    for part in range(3):  # three files, so Spark splits the work over tasks and workers
        write_parquet(frame.iloc[part * 2000 : (part + 1) * 2000], tmp_path / "in" / f"part{part}.parquet")
    keep = {"passthrough": ("row_id", "label")}
    rows = score_spark(config(exported, [tmp_path / "in"], tmp_path / "spark", batch_rows=700, **keep))
    score_local(config(exported, [tmp_path / "in"], tmp_path / "local", **keep))
    on_spark = read_output(tmp_path / "spark").sort_values("row_id", ignore_index=True)
    local = read_output(tmp_path / "local")
    assert rows == len(frame) == len(on_spark)
    assert on_spark["row_id"].tolist() == local["row_id"].tolist()
    assert on_spark["label"].tolist() == local["label"].tolist()
    assert np.array_equal(on_spark["score"].to_numpy(), local["score"].to_numpy())  # bit for bit
    assert no_temporaries(tmp_path)


def test_spark_reads_csv_like_the_local_backend(spark, exported, frame, tmp_path: Path) -> None:
    frame.head(1500).to_csv(tmp_path / "day.csv", index=False)
    score_spark(config(exported, [tmp_path / "day.csv"], tmp_path / "spark", passthrough=("row_id",)))
    score_local(config(exported, [tmp_path / "day.csv"], tmp_path / "local", passthrough=("row_id",)))
    on_spark = read_output(tmp_path / "spark")
    on_spark = on_spark.assign(row_id=on_spark["row_id"].astype(np.int64)).sort_values(
        "row_id", ignore_index=True
    )
    assert np.array_equal(on_spark["score"].to_numpy(), read_output(tmp_path / "local")["score"].to_numpy())


def test_spark_errors_name_the_column_and_leave_no_output(spark, exported, frame, tmp_path: Path) -> None:
    write_parquet(frame.drop(columns=["price"]), tmp_path / "missing.parquet")
    with pytest.raises(ExportError, match=r"missing columns \['price'\]"):
        score_spark(config(exported, [tmp_path / "missing.parquet"], tmp_path / "out"))
    bad = frame.head(100).copy()
    bad["price"] = bad["price"].astype(object)
    bad.iloc[7, bad.columns.get_loc("price")] = ""
    bad.to_csv(tmp_path / "bad.csv", index=False)  # a null found only while scoring, in a worker
    with pytest.raises(ExportError, match=r"the Spark job failed: .*column 'price', row 7: null"):
        score_spark(config(exported, [tmp_path / "bad.csv"], tmp_path / "out"))
    assert not (tmp_path / "out").exists() and no_temporaries(tmp_path)

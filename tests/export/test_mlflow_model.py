"""The MLflow registry holds a blessed version whose pyfunc and spark_udf score like recsys-batch-score (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from export.batch_job import score_local
from export.errors import ExportError
from tests.export.conftest import tiny_frame
from tests.export.test_batch_score import config, read_output, write_parquet

mlflow = pytest.importorskip("mlflow")

RECORD = {
    "decision": "blessed",
    "reason": "AUC 0.71 >= 0.70 - 0.0",
    "tolerance": 0.0,
    "candidate": {"auc": 0.71, "logloss": 0.6},
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    out = tiny_frame(3_000, seed=13)
    out.insert(0, "row_id", np.arange(len(out), dtype=np.int64))
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory, exported) -> tuple[str, object]:
    from export.mlflow_model import register_blessed

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    version = register_blessed(exported, RECORD, model_name="ctr", uri=uri)
    return uri, version


def test_the_registry_holds_the_blessed_version_with_its_record(registry, exported) -> None:
    uri, version = registry
    client = mlflow.MlflowClient(tracking_uri=uri)
    stored = client.get_model_version("ctr", version.version)
    assert stored.tags["serving_version"] == exported.name
    assert json.loads(stored.tags["blessing"]) == RECORD
    run = client.get_run(stored.run_id)
    assert run.data.metrics["auc"] == 0.71 and run.data.params["serving_version"] == exported.name
    with pytest.raises(ExportError, match="not blessed"):
        from export.mlflow_model import register_blessed

        register_blessed(exported, {"decision": "rejected"}, model_name="ctr", uri=uri)


def test_pyfunc_scores_equal_batch_scoring(registry, exported, frame, tmp_path: Path) -> None:
    uri, version = registry
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/ctr/{version.version}")
    rows = frame.drop(columns=["row_id", "label"]).head(2500)
    predicted = np.asarray(model.predict(rows), dtype=np.float32)
    write_parquet(frame.head(2500), tmp_path / "in.parquet")
    score_local(config(exported, [tmp_path / "in.parquet"], tmp_path / "out"))
    assert np.array_equal(predicted, read_output(tmp_path / "out")["score"].to_numpy())


def test_spark_udf_scores_equal_batch_scoring(registry, spark, exported, frame, tmp_path: Path) -> None:
    uri, version = registry
    mlflow.set_tracking_uri(uri)
    udf = mlflow.pyfunc.spark_udf(
        spark, f"models:/ctr/{version.version}", result_type="float", env_manager="local"
    )
    features = [c for c in frame.columns if c not in ("row_id", "label")]
    data = spark.createDataFrame(frame.head(3000))
    scored = data.withColumn("score", udf(*features)).select("row_id", "score").toPandas()
    scored = scored.sort_values("row_id", ignore_index=True)
    write_parquet(frame.head(3000), tmp_path / "in.parquet")
    score_local(config(exported, [tmp_path / "in.parquet"], tmp_path / "out"))
    assert np.array_equal(
        scored["score"].to_numpy(dtype=np.float32), read_output(tmp_path / "out")["score"].to_numpy()
    )

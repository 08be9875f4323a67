"""An exported SavedModel version as an MLflow model, and its entry in the MLflow model registry.

The ``mlflow.pyfunc`` flavour carries the version directory itself as an artifact and scores
with ``BatchScorer``, the code ``recsys-batch-score`` uses, so ``mlflow.pyfunc.load_model`` and
``mlflow.pyfunc.spark_udf`` give the same bits for every row as both batch backends. Its input
schema is the feature contract (a column per feature, in wire types).

Tracking needs no server: a ``sqlite:///path/mlflow.db`` URI keeps runs and the registry in one
file, artifacts beside it (MLflow 3 refuses the old ``./mlruns`` file store by default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.batch_model import DEFAULT_CHUNK_ROWS, BatchScorer
from export.errors import ExportError
from export.saved_model import read_assets
from training.features import FeatureContract
from training.tracking import experiment_id, tracking_uri

__all__ = ["log_saved_model", "model_signature", "register_blessed", "tracking_uri", "experiment_id"]

ARTIFACT_KEY = "saved_model"
MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value
_COLSPEC_TYPES = {"string": "string", "int64": "long", "float32": "float"}


def _pyfunc_class() -> type:
    import mlflow.pyfunc

    class SavedModelPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
        """Scores a DataFrame of contract columns with the carried SavedModel version."""

        def load_context(self, context: Any) -> None:
            chunk_rows = int((context.model_config or {}).get("chunk_rows", DEFAULT_CHUNK_ROWS))
            self._scorer = BatchScorer.load(Path(context.artifacts[ARTIFACT_KEY]), chunk_rows=chunk_rows)

        def predict(
            self, context: Any, model_input: Any, params: Mapping[str, Any] | None = None
        ) -> np.ndarray:
            import pyarrow as pa

            from export.batch_input import wire_inputs

            table = pa.Table.from_pandas(model_input, preserve_index=False)
            inputs = wire_inputs(
                self._scorer.contract, table, fill_defaults=False, where="pyfunc input", first_row=0
            )
            return self._scorer.score(inputs)

    return SavedModelPyfunc


def model_signature(contract: FeatureContract) -> Any:
    """The pyfunc signature: one column per feature in its wire type, one float score out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema([ColSpec(_COLSPEC_TYPES[f.dtype], f.name) for f in contract.features])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("float")]))


def log_saved_model(version_dir: Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Any:
    """Log the version as a pyfunc model in the active run; returns MLflow's ModelInfo."""
    import mlflow.pyfunc

    contract, _ = read_assets(Path(version_dir))
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=_pyfunc_class()(),
        artifacts={ARTIFACT_KEY: str(version_dir)},
        signature=model_signature(contract),
        model_config={"chunk_rows": chunk_rows},
    )


def register_blessed(
    version_dir: Path, record: Mapping[str, Any], *, model_name: str, uri: str, run_name: str | None = None
) -> Any:
    """Log a blessed version (metrics, blessing record, contract, pyfunc model) in a run and
    register it as a new version of ``model_name``, tagged with our version number and the
    blessing; returns the registry's ModelVersion."""
    import mlflow

    if record.get("decision") != "blessed":
        raise ExportError(
            f"{version_dir} is not blessed (decision {record.get('decision')!r}): not registered"
        )
    version = int(Path(version_dir).name)
    mlflow.set_tracking_uri(uri)
    candidate = record.get("candidate") or {}
    with mlflow.start_run(
        experiment_id=experiment_id(uri), run_name=run_name or f"{model_name}-v{version}-publish"
    ):
        mlflow.log_params(
            {"model_name": model_name, "serving_version": version, "tolerance": record.get("tolerance")}
        )
        mlflow.log_metrics(
            {k: float(v) for k, v in candidate.items() if isinstance(v, (int, float)) and k != "version"}
        )
        mlflow.log_dict(dict(record), "blessing.json")
        mlflow.log_artifact(str(Path(version_dir) / "assets.extra" / "feature_contract.json"))
        info = log_saved_model(Path(version_dir))
    text = json.dumps(record, sort_keys=True)
    tags = {
        "serving_version": str(version),
        "serving_path": str(Path(version_dir).resolve()),
        "blessing_decision": str(record.get("decision")),
        "blessing_reason": str(record.get("reason", ""))[:MAX_TAG_CHARS],
        "blessing": text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 3] + "...",
    }
    return mlflow.register_model(info.model_uri, model_name, tags=tags)

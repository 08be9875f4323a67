"""MLflow tracking for training and evaluation, off unless a tracking URI is given.

``recsys-train`` and ``recsys-evaluate`` log to MLflow when ``--mlflow-uri`` or
``MLFLOW_TRACKING_URI`` names a store (``sqlite:///mlflow.db`` needs no server): parameters,
per-epoch metrics, the evaluation report and plots, the feature contract. A resumed training run
continues its MLflow run (found by the run directory's tag), so its epochs stay one series.
Without a URI nothing is imported and nothing is written.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPERIMENT = "recsys"
OUT_DIR_TAG = "recsys.out_dir"
KIND_TAG = "recsys.kind"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value
_METRIC_NAME = re.compile(r"[^\w.\-/ :]")


def tracking_uri(explicit: str | None = None) -> str | None:
    """``explicit`` if given, else ``MLFLOW_TRACKING_URI``, else None (tracking off)."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or None


def experiment_id(uri: str, name: str = EXPERIMENT) -> str:
    """The experiment, created on first use; with a ``sqlite:///`` store its artifacts go beside
    the database file (``mlartifacts/``), not into ``./mlruns`` of the working folder."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as MLflow parameters (``data_options.num_rows``), values as text."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flat_params(value, prefix=f"{name}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[name] = text[:MAX_PARAM_CHARS]
    return out


class Tracker:
    """One MLflow run; every method is a no-op when tracking is off (``client`` is None)."""

    def __init__(self, client: Any = None, run_id: str | None = None) -> None:
        self.client = client
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def params(self, values: Mapping[str, Any]) -> None:
        if self.client is None:
            return
        have = self.client.get_run(self.run_id).data.params
        for key, value in flat_params(values).items():
            if key not in have:  # a resumed run keeps the parameters it started with
                self.client.log_param(self.run_id, key, value)

    def metrics(self, values: Mapping[str, Any], *, step: int | None = None, prefix: str = "") -> None:
        """Finite numbers of ``values`` (others skipped), at ``step``."""
        if self.client is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                name = _METRIC_NAME.sub("_", f"{prefix}{key}")  # MLflow's allowed characters
                self.client.log_metric(self.run_id, name, float(value), step=step or 0)

    def artifacts(self, paths: list[Path], *, folder: str | None = None) -> None:
        """Files (and folders, whole) into the run's artifacts."""
        if self.client is None:
            return
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), folder)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), folder)


@contextmanager
def tracked_run(
    uri: str | None, *, kind: str, out_dir: Path, run_name: str | None = None, resume: bool = False
) -> Iterator[Tracker]:
    """A Tracker for one command; with ``resume`` the latest unfinished or finished run tagged
    with ``out_dir`` and ``kind`` continues. The run ends FINISHED, or FAILED on an exception."""
    if uri is None:
        yield Tracker()
        return
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = experiment_id(uri)
    key = str(Path(out_dir).resolve())
    run_id = None
    if resume:
        found = client.search_runs(
            [experiment],
            filter_string=f"tags.`{OUT_DIR_TAG}` = '{key}' and tags.`{KIND_TAG}` = '{kind}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        run_id = found[0].info.run_id if found else None
    if run_id is None:
        run_id = client.create_run(
            experiment, run_name=run_name, tags={OUT_DIR_TAG: key, KIND_TAG: kind}
        ).info.run_id
    else:
        client.update_run(run_id, status="RUNNING")
    try:
        yield Tracker(client, run_id)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def log_evaluation(
    uri: str | None,
    *,
    out_dir: Path,
    params: Mapping[str, Any],
    summary: Mapping[str, Any],
    files: list[Path],
    contracts: Mapping[str, Path],
) -> None:
    """One MLflow run for a ``recsys-evaluate`` report: its settings, each model's mean metrics
    over seeds (``<model>.<metric>``), the report files and plots, each model's contract."""
    with tracked_run(uri, kind="evaluate", out_dir=out_dir) as tracker:
        tracker.params(params)
        for name, model in summary.get("models", {}).items():
            means = {key: stats.get("mean") for key, stats in model.get("metrics", {}).items()}
            tracker.metrics(means, prefix=f"{name}.")
        tracker.artifacts(files, folder="evaluation")
        for name, path in contracts.items():
            tracker.artifacts([path], folder=f"contracts/{name}")

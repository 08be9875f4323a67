"""MLflow tracking of training and evaluation runs on a temporary sqlite store (issue 16 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.tracking import Tracker, flat_params, tracked_run, tracking_uri

mlflow = pytest.importorskip("mlflow")


def test_off_without_a_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(None) is None
    with tracked_run(None, kind="train", out_dir=tmp_path) as tracker:
        assert not tracker.enabled
        tracker.metrics({"auc": 0.7}, step=1)  # no-ops
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert tracking_uri(None) == "sqlite:///x.db" and tracking_uri("sqlite:///y.db") == "sqlite:///y.db"


def test_flat_params_name_nested_settings() -> None:
    assert flat_params({"model": "lr", "data_options": {"num_rows": 20, "seed": 0}, "hidden": [8, 4]}) == {
        "model": "lr",
        "data_options.num_rows": "20",
        "data_options.seed": "0",
        "hidden": "[8, 4]",
    }


def test_a_resumed_run_continues_its_series(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    (tmp_path / "report.md").write_text("# report\n")
    with tracked_run(uri, kind="train", out_dir=out) as first:
        first.params({"model": "lr", "epochs": 2})
        first.metrics({"val_auc": 0.61, "loss": float("nan"), "epoch": 1}, step=1)
    with tracked_run(uri, kind="train", out_dir=out, resume=True) as again:
        assert again.run_id == first.run_id
        again.params({"model": "lr", "epochs": 3})  # the run keeps the value it started with
        again.metrics({"val_auc": 0.64}, step=2)
        again.artifacts([tmp_path / "report.md"], folder="evaluation")
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "val_auc")] == [
        (1, 0.61),
        (2, 0.64),
    ]
    assert "loss" not in run.data.metrics  # NaN is not logged
    assert [a.path for a in client.list_artifacts(first.run_id, "evaluation")] == ["evaluation/report.md"]
    assert (tmp_path / "mlartifacts").is_dir()
    with tracked_run(uri, kind="train", out_dir=out) as fresh:
        assert fresh.run_id != first.run_id


def test_a_failure_marks_the_run_failed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError):
        with tracked_run(uri, kind="evaluate", out_dir=tmp_path) as tracker:
            raise RuntimeError("boom")
    assert mlflow.MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "FAILED"
    assert isinstance(tracker, Tracker)


def test_train_and_evaluate_log_to_mlflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from training.cli import main as train_main
    from training.evaluate import main as evaluate_main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tmp_path / "run"
    base = ["--data", "synthetic", "--rows", "3000", "--model", "fm"]
    base += ["--out", str(run), "--batch-size", "512", "--quiet", "--mlflow-uri", uri]
    assert train_main([*base, "--epochs", "1"]) == 0
    assert train_main([*base, "--epochs", "2"]) == 0  # resumes: the same MLflow run goes on
    client = mlflow.MlflowClient(tracking_uri=uri)
    (train_run,) = client.search_runs(
        [client.get_experiment_by_name("recsys").experiment_id], "tags.`recsys.kind` = 'train'"
    )
    history = json.loads((run / "metrics.json").read_text())["history"]
    logged = client.get_metric_history(train_run.info.run_id, "val_auc")
    assert [(m.step, m.value) for m in logged] == [(row["epoch"], row["val_auc"]) for row in history]
    assert train_run.data.params["model"] == "fm" and train_run.data.params["epochs"] == "1"
    assert {a.path for a in client.list_artifacts(train_run.info.run_id)} >= {
        "feature_contract.json",
        "metrics.json",
    }

    assert evaluate_main(["--model", str(run), "--out", str(tmp_path / "eval"), "--mlflow-uri", uri]) == 0
    capsys.readouterr()
    (evaluation,) = client.search_runs([train_run.info.experiment_id], "tags.`recsys.kind` = 'evaluate'")
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    model_name = next(iter(report["summary"]["models"]))
    expected = report["summary"]["models"][model_name]["metrics"]["auc"]["mean"]
    assert evaluation.data.metrics[f"{model_name}.auc"] == pytest.approx(expected)
    files = {a.path for a in client.list_artifacts(evaluation.info.run_id, "evaluation")}
    assert "evaluation/report.md" in files

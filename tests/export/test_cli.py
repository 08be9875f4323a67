"""``python -m export.cli``: the four commands on a real training run, and every error path."""

from __future__ import annotations

import json

import pytest

from export.cli import EXIT_ERROR, EXIT_REJECTED, main
from export.layout import list_versions
from training.features import Feature, FeatureContract


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real (one short epoch) training run on synthetic data, as training/train.py writes it."""
    from training.config import TrainConfig
    from training.train import train

    root = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        out_dir=str(root / "run"),
        data="synthetic",
        data_options={"num_rows": 20_000, "seed": 0, "cache_dir": str(root / "data")},
        model="lr",
        epochs=1,
        batch_size=512,
        verbose=0,
    )
    train(config)
    return root / "run"


@pytest.fixture(scope="module")
def cli_base(tmp_path_factory, run_dir):
    """Version 1 exported through the CLI."""
    base = tmp_path_factory.mktemp("cli_base")
    assert main(["export", "--model-dir", str(run_dir), "--base", str(base), "--name", "ctr"]) == 0
    return base


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_export_command(cli_base, run_dir):
    version = cli_base / "ctr" / "1"
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
    card = json.loads((version / "assets.extra" / "model_card.json").read_text())
    assert card["data"]["source"] == "synthetic" and card["model"]["name"] == "lr"
    assert card["metrics"] == json.loads((run_dir / "metrics.json").read_text())


def test_verify_command_prints_signatures_and_report(cli_base, run_dir, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = main(
        [
            "verify",
            str(cli_base / "ctr" / "1"),
            "--model-dir",
            str(run_dir),
            "--min-rows",
            "2000",
            "--json",
            str(report_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:" in out
    assert "    inputs['user_id'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)\n" in out
    assert "PASSED" in out
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["rows_compared"] >= 2000 and report["max_abs_diff"] <= 1e-6


def test_verify_command_fails_on_too_few_rows(cli_base, run_dir, capsys):
    code = main(["verify", str(cli_base / "ctr" / "1"), "--model-dir", str(run_dir), "--min-rows", "1000000"])
    assert code == EXIT_REJECTED
    assert "[FAIL] keras_parity" in capsys.readouterr().out


def test_publish_command_blesses_then_onnx_matches(cli_base, run_dir, tmp_path, capsys):
    base = tmp_path / "base"
    code = main(
        ["publish", "--model-dir", str(run_dir), "--base", str(base), "--name", "ctr", "--min-rows", "2000"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "blessed: no published version yet: first version" in out
    assert json.loads((base / "ctr" / "1.blessing.json").read_text())["decision"] == "blessed"
    # the same model again, within tolerance 0 (equal AUC): blessed as version 2
    code = main(
        ["publish", "--model-dir", str(run_dir), "--base", str(base), "--name", "ctr", "--min-rows", "2000"]
    )
    assert code == 0 and list_versions(base / "ctr") == [1, 2]

    onnx_path = tmp_path / "core.onnx"
    code = main(
        [
            "onnx",
            "--model-dir",
            str(run_dir),
            "--out",
            str(onnx_path),
            "--version-dir",
            str(base / "ctr" / "1"),
            "--rows",
            "10000",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ONNX parity with" in out and "on 10000 rows" in out


@pytest.mark.parametrize("command", ["export", "verify", "publish", "onnx"])
def test_help_per_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: recsys-export {command}" in capsys.readouterr().out


def test_errors_exit_non_zero_and_write_nothing(cli_base, run_dir, tmp_path, capsys):
    before = _tree(cli_base)
    target = ["--base", str(cli_base), "--name", "ctr"]

    def fails(argv, message):
        assert main(argv) == EXIT_ERROR
        err = capsys.readouterr().err
        assert message in err, err
        assert _tree(cli_base) == before  # nothing half-written, no staging directory left

    fails(["export", "--model-dir", str(tmp_path / "nope"), *target], "model directory")
    fails(["export", "--model-dir", str(tmp_path / "nope"), *target], "does not exist")
    fails(
        ["export", "--model-dir", str(run_dir), *target, "--version", "1", "--no-warmup"],
        "version 1 already exists",
    )
    fails(
        ["export", "--model-dir", str(run_dir), *target, "--version", "v2", "--no-warmup"],
        "model version must be a positive integer",
    )

    other = FeatureContract(features=(Feature("city", "categorical_string", "context", hash_buckets=4),))
    other_path = other.save(tmp_path / "other_contract.json")
    fails(
        ["export", "--model-dir", str(run_dir), *target, "--contract", str(other_path), "--no-warmup"],
        "differs from the one built into",
    )

    blocker = tmp_path / "file_base"
    blocker.write_text("not a directory")
    assert (
        main(["export", "--model-dir", str(run_dir), "--base", str(blocker), "--name", "ctr", "--no-warmup"])
        == EXIT_ERROR
    )
    assert "is not writable" in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"

    fails(
        ["publish", "--model-dir", str(run_dir), *target, "--force", "--min-rows", "10"],
        "--force needs a reason",
    )
    fails(["verify", str(tmp_path / "absent" / "1")], "does not exist")


def test_publish_registers_the_blessed_version_in_mlflow(run_dir, tmp_path, capsys):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = tmp_path / "base"
    args = [
        "publish",
        "--model-dir",
        str(run_dir),
        "--base",
        str(base),
        "--name",
        "ctr",
        "--min-rows",
        "2000",
    ]
    assert main([*args, "--mlflow-uri", uri]) == 0
    assert f"registered in MLflow ({uri}): models:/ctr/1" in capsys.readouterr().out
    assert main([*args, "--mlflow-uri", uri]) == 0
    versions = mlflow.MlflowClient(tracking_uri=uri).search_model_versions("name='ctr'")
    assert sorted((int(v.version), v.tags["serving_version"]) for v in versions) == [(1, "1"), (2, "2")]

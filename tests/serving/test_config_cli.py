"""recsys-serving-config writes configs that TF Serving's own parsers read back as given."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.config_cli import main
from serving.model_server.config import read_batching_parameters, read_model_server_config


def test_writes_parsable_configs_and_prints_docker_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "config"
    argv = [
        "--out",
        str(out),
        "--model",
        "ctr=/models/ctr,policy=latest,num_versions=2,label=stable:1",
        "--model",
        "other=/models/other,policy=specific,versions=3:5",
        "--max-batch-size",
        "64",
    ]
    assert main(argv) == 0
    config = read_model_server_config(str(out / "models.config"))
    first, second = config.model_config_list.config
    assert (first.name, first.base_path, first.model_version_policy.latest.num_versions) == (
        "ctr",
        "/models/ctr",
        2,
    )
    assert dict(first.version_labels) == {"stable": 1}
    assert list(second.model_version_policy.specific.versions) == [3, 5]
    assert read_batching_parameters(str(out / "batching.config")).max_batch_size.value == 64
    printed = capsys.readouterr().out
    assert (
        f"-v {out}:/config:ro tensorflow/serving:2.21.0 --model_config_file=/config/models.config" in printed
    )
    assert "--monitoring_config_file=/config/monitoring.config" in printed
    # ServerCore checks labels before loading: without it TF Serving exits FAILED_PRECONDITION
    assert printed.rstrip().endswith("--allow_version_labels_for_unavailable_models=true")
    batching = read_batching_parameters(str(out / "batching.config"))
    assert batching.enable_large_batch_splitting.value and batching.max_execution_batch_size.value == 64


def test_write_is_the_default_command_and_labels_alone_add_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["write", "--out", str(tmp_path), "--model", "ctr=/models/ctr", "--no-large-batch-splitting"]) == 0
    printed = capsys.readouterr().out
    assert "--allow_version_labels_for_unavailable_models" not in printed
    batching = read_batching_parameters(str(tmp_path / "batching.config"))
    assert batching.max_batch_size.value == 1000 and not batching.HasField("enable_large_batch_splitting")


def test_an_execution_batch_over_max_batch_size_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--out", str(tmp_path), "--model", "ctr=/models/ctr", "--max-batch-size", "100"]
    assert main([*argv, "--max-execution-batch-size", "200"]) == 2
    assert "max_execution_batch_size=200 must be in 1..max_batch_size (100)" in capsys.readouterr().err
    assert not (tmp_path / "batching.config").exists()


def test_bad_model_argument_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--model", "ctr=/m,policy=newest"])
    assert "policy 'newest' is not latest, all or specific" in capsys.readouterr().err

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


def test_bad_model_argument_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--model", "ctr=/m,policy=newest"])
    assert "policy 'newest' is not latest, all or specific" in capsys.readouterr().err

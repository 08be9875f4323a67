"""docker/ helpers: requirements.py, gen_config.py (and the committed config), e2e.sh, docker.mk."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from recommender_client.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docker_{name}", DOCKER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def requirements() -> ModuleType:
    return _load("requirements")


def test_requirements_expand_extras_and_self_references(requirements: ModuleType, tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "My_Pkg"\ndependencies = ["a>=1", "b"]\n'
        "[project.optional-dependencies]\n"
        'x = ["c==2"]\ny = ["d", "b"]\nall = ["my-pkg[x,y]", "e"]\n'
    )
    assert requirements.requirements(pyproject) == ["a>=1", "b"]
    assert requirements.requirements(pyproject, ["x"]) == ["a>=1", "b", "c==2"]
    # breadth first: all's own "e", then the referenced extras x and y; "b" only once
    assert requirements.requirements(pyproject, ["all"]) == ["a>=1", "b", "e", "c==2", "d"]
    with pytest.raises(ValueError, match=r"extra 'z' is not declared \(have \['all', 'x', 'y'\]\)"):
        requirements.requirements(pyproject, ["z"])
    empty = tmp_path / "empty.toml"
    empty.write_text("[tool.x]\n")
    with pytest.raises(ValueError, match=r"empty.toml: no \[project\] table"):
        requirements.requirements(empty)


def test_ranker_requirements_have_no_tensorflow(requirements: ModuleType) -> None:
    core = requirements.requirements(REPO / "pyproject.toml")
    names = {r.split(";")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for r in core}
    assert {"fastapi", "grpcio", "protobuf", "pydantic-settings", "numpy"} <= names
    assert not names & {"tensorflow", "keras", "tensorflow-serving-api", "pandas", "pyarrow"}
    serving = requirements.requirements(REPO / "pyproject.toml", ["serving"])
    assert "tensorflow==2.21.0" in serving and "tensorflow-serving-api==2.21.0" in serving


def test_requirements_cli_reports_errors(tmp_path: Path) -> None:
    script = str(DOCKER / "requirements.py")
    done = subprocess.run(["python3", script, str(tmp_path / "missing.toml")], capture_output=True, text=True)
    assert done.returncode == 2 and "missing.toml" in done.stderr
    done = subprocess.run(["python3", script, str(REPO / "pyproject.toml")], capture_output=True, text=True)
    assert done.returncode == 0 and "fastapi>=0.110,<1" in done.stdout.splitlines()


def test_committed_config_is_what_the_generator_writes(tmp_path: Path) -> None:
    written = _load("gen_config").write(tmp_path, "ctr")
    assert sorted(p.name for p in written.values()) == [
        "batching.config",
        "models.config",
        "monitoring.config",
    ]
    for path in written.values():
        assert (DOCKER / "config" / path.name).read_text() == path.read_text(), path.name
        assert path.stat().st_mode & 0o777 == 0o644  # readable by the non-root server


def test_committed_config_parses_as_the_server_reads_it() -> None:
    from serving.model_server.config import (
        prometheus_path,
        read_batching_parameters,
        read_model_server_config,
        read_monitoring_config,
    )

    models = read_model_server_config(DOCKER / "config" / "models.config")
    (entry,) = models.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("ctr", "/models/ctr", "tensorflow")
    batching = read_batching_parameters(DOCKER / "config" / "batching.config")
    assert (batching.max_batch_size.value, batching.batch_timeout_micros.value) == (1000, 2000)
    assert batching.enable_large_batch_splitting.value and batching.max_execution_batch_size.value == 128
    fields = Settings.model_fields  # the ranker's default Predict: chunk size, cut to max_candidates
    assert (
        min(fields["predict_chunk_size"].default, fields["max_candidates"].default)
        <= batching.max_batch_size.value
    )
    monitoring = read_monitoring_config(DOCKER / "config" / "monitoring.config")
    assert prometheus_path(monitoring) == "/monitoring/prometheus/metrics"


@pytest.mark.parametrize("script", ["e2e.sh", "model_server_entrypoint.sh"])
def test_shell_scripts_parse(script: str) -> None:
    done = subprocess.run(["bash", "-n", str(DOCKER / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_e2e_names_no_hosts_and_reads_the_mirror_from_apt() -> None:
    text = (DOCKER / "e2e.sh").read_text()
    assert "/etc/apt/sources.list" in text
    assert "deb.debian.org" not in text and "http://" not in text.replace("http://127.0.0.1", "")


def test_make_targets_expand(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        [
            make,
            "-n",
            "-f",
            str(DOCKER / "docker.mk"),
            "docker-up",
            "docker-down",
            "docker-build",
            "COMPOSE=docker compose",
            f"RECSYS_MODELS_DIR={tmp_path}/m",
            "MODEL_SERVER_IMAGE=recsys/model-server:latest",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(
        "MODEL_SERVER_IMAGE=recsys/model-server:latest" in line and line.endswith("up -d") for line in lines
    )
    assert any(line.endswith("-p recsys down --remove-orphans") for line in lines)
    assert "docker build -f docker/tfserving.Dockerfile -t recsys/tfserving:2.21.0 ." in lines
    assert f"mkdir -p {tmp_path}/m/ctr " in " ".join(lines) + " "

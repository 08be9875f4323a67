"""Static checks of the four Dockerfiles: base images, ports, layout, flags, user and health checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from recommender_client.service.settings import Settings
from serving.tfserving_config import server_flags
from tests.docker.dockerfiles import Instruction, env_of, named, parse

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
CONFIG_FLAGS = server_flags("/config", batching=True, monitoring=True)


def _tensorflow_pin() -> str:
    text = (REPO / "pyproject.toml").read_text()
    pins = set(re.findall(r'"tensorflow==([0-9.]+)"', text))
    assert len(pins) == 1, f"expected one tensorflow pin in pyproject.toml, got {pins}"
    return pins.pop()


@pytest.fixture(scope="module")
def tfserving() -> list[Instruction]:
    return parse(DOCKER / "tfserving.Dockerfile")


@pytest.fixture(scope="module")
def embedded() -> list[Instruction]:
    return parse(DOCKER / "model-server.Dockerfile")


@pytest.fixture(scope="module")
def ranker() -> list[Instruction]:
    return parse(DOCKER / "ranker.Dockerfile")


@pytest.fixture(scope="module")
def redis() -> list[Instruction]:
    return parse(DOCKER / "redis.Dockerfile")


def _exposed(instructions: list[Instruction]) -> set[str]:
    return {port for ins in named(instructions, "EXPOSE") for port in ins.text.split()}


def _user(instructions: list[Instruction]) -> str:
    users = named(instructions, "USER")
    assert users, "no USER instruction"
    return users[-1].text


def test_tfserving_image_is_the_pinned_official_one(tfserving: list[Instruction]) -> None:
    froms = named(tfserving, "FROM")
    assert [f.text for f in froms] == [f"tensorflow/serving:{_tensorflow_pin()}"]
    assert _tensorflow_pin() == "2.21.0"


def test_tfserving_keeps_the_entrypoint_and_serves_our_config(tfserving: list[Instruction]) -> None:
    assert not named(tfserving, "ENTRYPOINT"), "TF Serving's own entrypoint must stay unchanged"
    assert _exposed(tfserving) == {"8500", "8501"}
    assert env_of(tfserving)["MODEL_NAME"] == "ctr"
    assert named(tfserving, "CMD")[-1].exec_form() == CONFIG_FLAGS
    copies = [c.text.split() for c in named(tfserving, "COPY")]
    assert ["docker/config/", "/config/"] in copies


def test_base_image_comes_from_a_build_arg(
    embedded: list[Instruction], ranker: list[Instruction], redis: list[Instruction]
) -> None:
    for instructions in (embedded, ranker, redis):
        assert instructions[0].name == "ARG"
        assert instructions[0].text == "BASE_IMAGE=python:3.11-slim-bookworm"
        assert [f.text for f in named(instructions, "FROM")] == ["${BASE_IMAGE}"]


def test_embedded_server_matches_the_official_layout(embedded: list[Instruction]) -> None:
    env = env_of(embedded)
    assert (env["MODEL_NAME"], env["MODEL_BASE_PATH"]) == ("ctr", "/models")
    assert _exposed(embedded) == {"8500", "8501"}
    assert named(embedded, "CMD")[-1].exec_form() == CONFIG_FLAGS
    entry = named(embedded, "ENTRYPOINT")[-1].exec_form()
    assert entry == ["/usr/local/bin/model_server_entrypoint.sh"]
    script = (DOCKER / "model_server_entrypoint.sh").read_text()
    assert "--port=8500 --rest_api_port=8501 --bind_address=0.0.0.0" in script  # the server alone binds 127.0.0.1
    assert '"--model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME}"' in script
    assert _user(embedded) not in ("0", "root")
    install = " ".join(i.text for i in named(embedded, "RUN"))
    assert "requirements.py pyproject.toml serving" in install


def test_ranker_is_non_root_without_tensorflow(ranker: list[Instruction]) -> None:
    user = _user(ranker)
    assert user not in ("0", "root") and user.split(":")[0] != "0"
    runs = " ".join(i.text for i in named(ranker, "RUN"))
    # core dependencies only: the requirements helper is called without extras
    assert re.search(r"requirements\.py pyproject\.toml >", runs)
    assert "find_spec('tensorflow') is None" in runs
    copied = {src for c in named(ranker, "COPY") for src in c.text.split()[:-1]}
    assert not copied & {"serving", "export", "training", "training/"}, copied
    # Every training module the ranker's process imports is copied (the image has no others).
    probe = "import sys, recommender_client.service.app, recommender_client.console.api; " + (
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('training'))))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    needed = {m.replace(".", "/") + ("/__init__.py" if m == "training" else ".py") for m in imported}
    assert "training/features.py" in needed
    assert needed <= copied, sorted(needed - copied)


def test_ranker_healthcheck_probes_healthz(ranker: list[Instruction]) -> None:
    (check,) = named(ranker, "HEALTHCHECK")
    argv = check.exec_form()
    assert argv[0] == "python" and "http://127.0.0.1:8080/healthz" in argv[-1]
    assert compile(argv[-1], "healthcheck", "exec")  # the probe is valid Python
    assert check.options()["timeout"] == "3s"
    assert _exposed(ranker) == {"8080"}
    assert named(ranker, "ENTRYPOINT")[-1].exec_form() == [
        "recsys-ranker",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]


def test_model_server_healthchecks_need_only_bash(
    tfserving: list[Instruction], embedded: list[Instruction]
) -> None:
    probes = [named(i, "HEALTHCHECK")[0].exec_form() for i in (tfserving, embedded)]
    assert probes[0] == probes[1]
    assert probes[0][:2] == ["bash", "-c"]
    assert "/dev/tcp/127.0.0.1/8501" in probes[0][2] and '"$MODEL_NAME"' in probes[0][2]


def test_redis_is_debians_non_root_without_persistence_and_bounded(redis: list[Instruction]) -> None:
    """Built from the local base with apt (no redis image pulled); a cache, so no RDB/AOF, capped memory."""
    assert "apt-get install -y --no-install-recommends redis-server" in " ".join(
        i.text for i in named(redis, "RUN")
    )
    assert _user(redis) == "redis" and _exposed(redis) == {"6379"}
    assert named(redis, "HEALTHCHECK")[0].exec_form() == ["redis-cli", "ping"]
    argv = named(redis, "ENTRYPOINT")[-1].exec_form() + named(redis, "CMD")[-1].exec_form()
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert argv[0] == "redis-server"
    assert (flags["--save"], flags["--appendonly"], flags["--port"]) == ("", "no", "6379")
    assert (flags["--maxmemory"], flags["--maxmemory-policy"]) == ("256mb", "allkeys-lru")
    assert (
        int(flags["--zset-max-listpack-entries"])
        >= Settings.model_fields["exposure_max_events_per_user"].default
    )


@pytest.mark.parametrize(
    "name", ["tfserving.Dockerfile", "model-server.Dockerfile", "ranker.Dockerfile", "redis.Dockerfile"]
)
def test_copy_sources_exist_and_are_in_the_build_context(name: str) -> None:
    include = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for copy in named(parse(DOCKER / name), "COPY"):
        for source in copy.text.split()[:-1]:
            assert (REPO / source).exists(), f"{name}:{copy.line}: COPY source {source} does not exist"
            clean = source.rstrip("/")
            assert any(clean == inc or clean.startswith(inc + "/") for inc in include), (
                f"{name}:{copy.line}: {source} is excluded by .dockerignore"
            )


def test_parser_reports_a_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM scratch\nRUN echo \\\n  hi\n!oops\n")
    with pytest.raises(ValueError, match=r"Dockerfile:4: not an instruction"):
        parse(bad)
    bad.write_text("FROM scratch\nRUN echo \\\n")
    with pytest.raises(ValueError, match="ends inside a continued line"):
        parse(bad)

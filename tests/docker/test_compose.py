"""docker/compose.yaml: services, one-to-one ranker settings, health-gated start, loopback ports, live model folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender_client.service.settings import Settings
from serving.tfserving_config import server_flags

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env(service: dict[str, Any]) -> dict[str, str | None]:
    """List-form environment -> {name: value or None for pass-through}."""
    out: dict[str, str | None] = {}
    for entry in service["environment"]:
        name, sep, value = entry.partition("=")
        assert name not in out, f"{name} listed twice"
        out[name] = value if sep else None
    return out


def test_three_services_and_the_image_switch(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"model-server", "ranker", "redis"}
    assert services["model-server"]["image"] == "${MODEL_SERVER_IMAGE:-recsys/tfserving:2.21.0}"
    assert services["ranker"]["image"] == "${RANKER_IMAGE:-recsys/ranker:latest}"
    assert services["ranker"]["build"] == {"context": "..", "dockerfile": "docker/ranker.Dockerfile"}
    assert services["redis"]["image"] == "${REDIS_IMAGE:-recsys/redis:latest}"
    assert services["redis"]["build"] == {"context": "..", "dockerfile": "docker/redis.Dockerfile"}


def test_ranker_env_maps_one_to_one_onto_settings(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["ranker"])
    expected = {f"RANKER_{name.upper()}" for name in Settings.model_fields}
    assert set(env) == expected
    for name, value in env.items():
        if value is not None:  # a default given in compose is exactly ${NAME:-default}
            assert re.fullmatch(rf"\$\{{{name}:-[^}}]+\}}", value), (name, value)
    assert env["RANKER_GRPC_TARGET"] == "${RANKER_GRPC_TARGET:-model-server:8500}"
    assert env["RANKER_REST_URL"] == "${RANKER_REST_URL:-http://model-server:8501}"
    assert env["RANKER_ARTIFACTS_DIR"] == "${RANKER_ARTIFACTS_DIR:-/srv/ranker/artifacts}"


def test_compose_wiring_builds_valid_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defaults compose gives, read by the real Settings, point the ranker at the model server."""
    for name in list(os.environ):
        if name.startswith("RANKER_"):
            monkeypatch.delenv(name)
    for name, value in _env(compose["services"]["ranker"]).items():
        if value is not None:
            monkeypatch.setenv(name, re.fullmatch(r"\$\{\w+:-(.*)\}", value).group(1))
    settings = Settings()
    assert settings.grpc_target == "model-server:8500"
    assert settings.contract_path == Path("/srv/ranker/artifacts/feature_contract.json")
    assert settings.model_name == "ctr" and settings.rules_path is None
    assert (settings.state_backend, settings.redis_url) == ("redis", "redis://redis:6379/0")


def test_startup_is_health_gated(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["ranker"]["depends_on"] == {
        "model-server": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    server_probe = services["model-server"]["healthcheck"]["test"]
    assert server_probe[:3] == ["CMD", "bash", "-c"]
    # $$ is compose's escape: the container's shell expands MODEL_NAME, not compose
    assert '"$$MODEL_NAME"' in server_probe[3] and "/dev/tcp/127.0.0.1/8501" in server_probe[3]
    assert "http://127.0.0.1:8080/healthz" in services["ranker"]["healthcheck"]["test"][-1]
    for service in services.values():
        assert {"interval", "timeout", "retries", "start_period"} <= set(service["healthcheck"])


def test_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    ports = {name: s["ports"] for name, s in compose["services"].items()}
    assert ports["model-server"] == [
        "127.0.0.1:${RECSYS_GRPC_PORT:-8500}:8500",
        "127.0.0.1:${RECSYS_REST_PORT:-8501}:8501",
    ]
    assert ports["ranker"] == ["127.0.0.1:${RECSYS_RANKER_PORT:-8080}:8080"]
    assert ports["redis"] == ["127.0.0.1:${RECSYS_REDIS_PORT:-6379}:6379"]


def test_model_folder_is_mounted_live_and_flags_match_the_images(compose: dict[str, Any]) -> None:
    server = compose["services"]["model-server"]
    assert "${RECSYS_MODELS_DIR:-../runs/docker/models}:/models:ro" in server["volumes"]
    assert "./config:/config:ro" in server["volumes"]
    assert server["command"] == server_flags("/config", batching=True, monitoring=True)
    assert server["environment"] == ["MODEL_NAME=ctr"]
    models_config = (REPO / "docker" / "config" / "models.config").read_text()
    assert 'name: "ctr"' in models_config and 'base_path: "/models/ctr"' in models_config
    assert (
        "${RECSYS_RANKER_DIR:-../runs/docker/ranker}:/srv/ranker:ro"
        in compose["services"]["ranker"]["volumes"]
    )


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_config_validates(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose plugin and no docker-compose on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANKER_", "RECSYS_", "MODEL_SERVER"))}
    env |= {"RECSYS_MODELS_DIR": str(tmp_path / "models"), "RANKER_MAX_K": "7", "HOME": str(tmp_path)}
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    ranker_env = resolved["services"]["ranker"]["environment"]
    assert ranker_env["RANKER_MAX_K"] == "7"  # passed through from the shell
    assert ranker_env["RANKER_GRPC_TARGET"] == "model-server:8500"
    assert resolved["services"]["model-server"]["image"] == "recsys/tfserving:2.21.0"
    volumes = resolved["services"]["model-server"]["volumes"]
    text = yaml.safe_dump(volumes)
    assert str(tmp_path / "models") in text and "/models" in text

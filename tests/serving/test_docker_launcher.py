"""serving.docker_launcher and `recsys-serving-config up/down` with a fake Docker client (no daemon).

The real run against a Docker engine is docker/e2e.sh; here the container API is a recording
fake whose status and REST answers follow a script, so every branch (ready, exited, timed
out, already running, down) is checked with hand-written expectations.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving import docker_cli
from serving.config_cli import main as config_main
from serving.docker_launcher import LABEL, LaunchConfig, LaunchError, down, launch_config, up, wait_available


class FakeContainer:
    """A container whose ``status`` after each ``reload()`` comes from a script."""

    def __init__(self, name: str, labels: dict[str, str], statuses: Iterator[str], log: bytes) -> None:
        self.name = name
        self.labels = labels
        self._statuses = statuses
        self.status = "created"
        self.attrs: dict[str, Any] = {"State": {"ExitCode": 0}}
        self.log = log
        self.events: list[str] = []

    def reload(self) -> None:
        self.status = next(self._statuses, self.status)
        if self.status == "exited":
            self.attrs["State"]["ExitCode"] = 1

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        assert stdout and stderr
        return self.log

    def stop(self, timeout: int) -> None:
        self.events.append(f"stop {timeout}")

    def remove(self, force: bool = False) -> None:
        self.events.append("remove force" if force else "remove")
        self.client.removed.append(self)


class FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def run(self, **kwargs: Any) -> FakeContainer:
        self.client.run_kwargs.append(kwargs)
        container = FakeContainer(
            kwargs["name"], kwargs["labels"], iter(self.client.statuses), self.client.log
        )
        container.client = self.client  # type: ignore[attr-defined]
        self.client.running.append(container)
        return container

    def list(self, all: bool, filters: dict[str, str]) -> list[FakeContainer]:
        assert all is True
        key, _, value = filters["label"].partition("=")
        return [c for c in self.client.running if c.labels.get(key) == value and c not in self.client.removed]


class FakeClient:
    def __init__(self, statuses: list[str], log: bytes = b"line 1\nline 2\n") -> None:
        self.statuses = statuses
        self.log = log
        self.run_kwargs: list[dict[str, Any]] = []
        self.running: list[FakeContainer] = []
        self.removed: list[FakeContainer] = []
        self.containers = FakeContainers(self)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def status_answers(*states: str) -> Any:
    """A fetch that answers GET /v1/models/<m> with one version in each given state, in turn;
    "down" is a connection refused, "404" TF Serving's not-found answer."""
    answers = iter(states)
    urls: list[str] = []

    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        urls.append(url)
        state = next(answers)
        if state == "down":
            raise ConnectionRefusedError(111, "Connection refused")
        if state == "404":
            return 404, json.dumps({"error": "Could not find any versions of model ctr"}).encode()
        return 200, json.dumps({"model_version_status": [{"version": "1", "state": state}]}).encode()

    fetch.urls = urls  # type: ignore[attr-defined]
    return fetch


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    out = tmp_path / "config"
    assert config_main(["write", "--out", str(out), "--model", "ctr=/models/ctr,label=stable:1"]) == 0
    return out


def _config(config_dir: Path, tmp_path: Path, **options: Any) -> LaunchConfig:
    return launch_config(config_dir, tmp_path / "models", log_path=tmp_path / "server.log", **options)


def test_launch_config_follows_the_files(config_dir: Path, tmp_path: Path) -> None:
    config = _config(config_dir, tmp_path, extra_flags=["--tensorflow_intra_op_parallelism=2"])
    assert config.flags == (
        "--model_config_file=/config/models.config",
        "--model_config_file_poll_wait_seconds=60",
        "--enable_batching=true",
        "--batching_parameters_file=/config/batching.config",
        "--monitoring_config_file=/config/monitoring.config",
        "--allow_version_labels_for_unavailable_models=true",
        "--tensorflow_intra_op_parallelism=2",
    )
    kwargs = config.run_kwargs()
    assert kwargs["command"] == list(config.flags)
    assert kwargs["volumes"] == {
        str(tmp_path / "models"): {"bind": "/models", "mode": "ro"},
        str(config_dir): {"bind": "/config", "mode": "ro"},
    }
    assert kwargs["ports"] == {"8500/tcp": ("127.0.0.1", 8500), "8501/tcp": ("127.0.0.1", 8501)}
    assert kwargs["labels"] == {LABEL: "recsys-model-server"} and kwargs["detach"] is True
    assert kwargs["environment"] == {"MODEL_NAME": "ctr"} and "network" not in kwargs

    (config_dir / "batching.config").unlink()
    (config_dir / "monitoring.config").unlink()
    bare = _config(config_dir, tmp_path, network="stack")
    assert not any("batching" in f or "monitoring" in f for f in bare.flags)
    assert bare.run_kwargs()["network"] == "stack"


def test_launch_config_refuses_what_the_container_could_not_serve(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="models.config does not exist"):
        launch_config(tmp_path, tmp_path)
    out = tmp_path / "config"
    assert config_main(["--out", str(out), "--model", "ctr=/srv/ctr"]) == 0
    with pytest.raises(ValueError, match="base_path /srv/ctr is not below /models"):
        launch_config(out, tmp_path)
    with pytest.raises(ValueError, match="grpc_port=0 is not a port number"):
        LaunchConfig("img", tmp_path, tmp_path, ("ctr",), (), grpc_port=0)
    with pytest.raises(ValueError, match="models_dir must be an absolute path"):
        LaunchConfig("img", Path("models"), tmp_path, ("ctr",), ())


def test_up_waits_for_available_and_saves_the_log(config_dir: Path, tmp_path: Path) -> None:
    client = FakeClient(["running"])
    clock = FakeClock()
    fetch = status_answers("down", "404", "LOADING", "AVAILABLE")
    seen: list[str] = []
    container = up(
        client,
        _config(config_dir, tmp_path),
        fetch=fetch,
        clock=clock,
        sleep=clock.sleep,
        progress=seen.append,
    )
    assert fetch.urls == ["http://127.0.0.1:8501/v1/models/ctr"] * 4
    assert [line.split("] ")[1] for line in seen] == [
        "ctr: REST API not answering (ConnectionRefusedError)",
        "ctr: HTTP 404: Could not find any versions of model ctr",
        "ctr: 1:LOADING",
        "ctr: 1:AVAILABLE",
    ]
    assert clock.now == 3.0  # three polls at the default 1 s interval
    assert container.events == [] and (tmp_path / "server.log").read_bytes() == client.log


def test_an_exited_container_fails_up_with_its_log_and_is_removed(config_dir: Path, tmp_path: Path) -> None:
    log = b"".join(b"line %d\n" % i for i in range(30)) + b"FAILED_PRECONDITION: label stable\n"
    client = FakeClient(["running", "exited"], log=log)
    clock = FakeClock()
    with pytest.raises(LaunchError) as error:
        up(
            client,
            _config(config_dir, tmp_path),
            fetch=status_answers("down"),
            clock=clock,
            sleep=clock.sleep,
            progress=print,
        )
    message = str(error.value)
    assert "container recsys-model-server exited (code 1) before ctr became AVAILABLE" in message
    assert message.endswith("line 29\nFAILED_PRECONDITION: label stable")
    assert "line 10\n" not in message  # only the last 20 lines
    (container,) = client.running
    assert container.events == ["remove force"] and (tmp_path / "server.log").read_bytes() == log


def test_a_model_never_available_times_out(config_dir: Path, tmp_path: Path) -> None:
    client = FakeClient(["running"])
    clock = FakeClock()
    config = _config(config_dir, tmp_path, ready_timeout_s=2.5)
    with pytest.raises(
        LaunchError,
        match=r"timed out after 2.5s waiting for ctr to be AVAILABLE at http://127.0.0.1:8501 \(ctr: 1:LOADING\)",
    ):
        wait_available(
            config,
            client.containers.run(**config.run_kwargs()),
            fetch=status_answers(*["LOADING"] * 4),
            clock=clock,
            sleep=clock.sleep,
            progress=lambda line: None,
        )
    assert clock.now == 3.0


def test_up_refuses_a_second_launch_and_down_removes_it(config_dir: Path, tmp_path: Path) -> None:
    client = FakeClient(["running"])
    clock = FakeClock()
    config = _config(config_dir, tmp_path)
    up(client, config, fetch=status_answers("AVAILABLE"), clock=clock, sleep=clock.sleep, progress=print)
    with pytest.raises(LaunchError, match="container recsys-model-server already exists \\(running\\)"):
        up(client, config, fetch=status_answers("AVAILABLE"), clock=clock, sleep=clock.sleep)
    assert len(client.run_kwargs) == 1
    assert down(client, "recsys-model-server", log_path=tmp_path / "down.log", stop_timeout_s=3) == [
        "recsys-model-server"
    ]
    assert client.running[0].events == ["stop 3", "remove"]
    assert (tmp_path / "down.log").read_bytes() == client.log
    assert down(client, "recsys-model-server") == []


def test_cli_up_and_down(config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    docker_cli.add_parsers(parser.add_subparsers(dest="command"))
    client = FakeClient(["running"])
    clock = FakeClock()
    args = parser.parse_args(
        [
            "up",
            "--config-dir",
            str(config_dir),
            "--models-dir",
            str(tmp_path / "models"),
            "--rest-port",
            "9501",
            "--image",
            "recsys/model-server:e2e",
            "--log-file",
            str(tmp_path / "up.log"),
        ]
    )
    assert (
        docker_cli.run(args, client, fetch=status_answers("AVAILABLE"), clock=clock, sleep=clock.sleep) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(
        "starting recsys/model-server:e2e as recsys-model-server: --model_config_file=/config/models.config"
    )
    assert "recsys-model-server ready: gRPC 127.0.0.1:8500, REST http://127.0.0.1:9501" in out
    assert client.run_kwargs[0]["ports"]["8501/tcp"] == ("127.0.0.1", 9501)

    args = parser.parse_args(["up", "--config-dir", str(tmp_path), "--models-dir", str(tmp_path)])
    assert docker_cli.run(args, client) == 1
    assert capsys.readouterr().out.startswith(f"error: {tmp_path / 'models.config'} does not exist")

    args = parser.parse_args(["down", "--log-file", str(tmp_path / "down.log")])
    assert docker_cli.run(args, client) == 0
    assert capsys.readouterr().out == f"removed recsys-model-server; log saved to {tmp_path / 'down.log'}\n"

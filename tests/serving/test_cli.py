"""The command line: tensorflow_model_server's flags, its failure texts, and a served model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from serving.cli import main, parse_options
from serving.model_server.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_flags_map_to_options() -> None:
    options = parse_options(
        [
            "--port=9000",
            "--rest_api_port",
            "9001",
            "--model_name=ctr",
            "--model_base_path=/models/ctr",
            "--enable_batching",
            "--enable_model_warmup=false",
            "--file_system_poll_wait_seconds=5",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=2000",
            "--bind_address=127.0.0.1",
        ]
    )
    assert (options.port, options.rest_api_port, options.model_name) == (9000, 9001, "ctr")
    assert options.enable_batching is True and options.enable_model_warmup is False
    assert options.file_system_poll_wait_seconds == 5
    assert options.grpc_channel_arguments == "grpc.max_connection_age_ms=2000"
    assert options.bind_address == "127.0.0.1"
    with pytest.raises(ConfigError, match="unknown command line flag 'no_such_flag'"):
        parse_options(["--model_base_path=/m", "--no_such_flag=1"])


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving.model_server", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_unknown_flag_exits_non_zero() -> None:
    result = _run_cli("--model_base_path=/m", "--frobnicate=3")
    assert result.returncode != 0
    assert "ERROR: unknown command line flag 'frobnicate'" in result.stderr
    assert "usage:" in result.stderr


def test_bad_config_file_and_bad_model_exit_non_zero(tfserving_testdata: Path, capsys) -> None:
    code = main([f"--model_config_file={tfserving_testdata / 'bad_model_config.txt'}", "--port=0"])
    assert code == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in capsys.readouterr().err
    code = main(
        [
            "--model_name=bad",
            f"--model_base_path={tfserving_testdata / 'bad_half_plus_two'}",
            "--port=0",
            "--bind_address=127.0.0.1",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available" in err
    assert "{name: bad version: 123}" in err


def test_cli_serves_until_stopped(tfserving_testdata: Path) -> None:
    grpc = pytest.importorskip("grpc")
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    port = _free_port()
    stop = threading.Event()
    codes: list[int] = []
    argv = [
        f"--port={port}",
        "--bind_address=127.0.0.1",
        "--model_name=half_plus_two",
        f"--model_base_path={tfserving_testdata / 'saved_model_half_plus_two_cpu'}",
        "--file_system_poll_wait_seconds=0",
    ]
    thread = threading.Thread(target=lambda: codes.append(main(argv, stop_event=stop)))
    thread.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "half_plus_two"
            deadline = time.monotonic() + 120
            while True:
                try:
                    response = stub.GetModelStatus(request, timeout=5)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline or not thread.is_alive():
                        raise
                    time.sleep(0.2)
        status = response.model_version_status[0]
        assert (status.version, get_model_status_pb2.ModelVersionStatus.State.Name(status.state)) == (
            123,
            "AVAILABLE",
        )
    finally:
        stop.set()
        thread.join(60)
    assert codes == [0]


_PROBE = """
import os, sys
from serving.cli import POLLER_EXPERIMENTS, main
assert "grpc" not in sys.modules, "importing serving.cli must not import grpc"
assert main(["--help"]) == 0
print("GRPC_EXPERIMENTS=" + os.environ.get("GRPC_EXPERIMENTS", "<unset>"))
print("POLLER=" + POLLER_EXPERIMENTS)
"""


@pytest.mark.parametrize("preset", [None, "-event_engine_client"])
def test_server_process_polls_sockets_in_its_own_threads(preset: str | None) -> None:
    """A fresh server process sets grpc's experiments before grpc is imported (grpc's core
    reads them then); a value the user set is kept."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    if preset is not None:
        env["GRPC_EXPERIMENTS"] = preset
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120, check=True
    ).stdout
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    poller = lines["POLLER"]
    assert poller == "-event_engine_listener,-event_engine_for_all_other_endpoints"
    assert lines["GRPC_EXPERIMENTS"] == (preset if preset is not None else poller)

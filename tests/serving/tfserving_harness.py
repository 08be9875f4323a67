"""Start the embedded server as TF Serving's integration harness starts tensorflow_model_server.

TF Serving's `tensorflow_model_server_test_base.RunServer` builds one command line per test:
`--port --rest_api_port --rest_api_timeout_in_ms=5000 --grpc_socket_path`, then the model
(`--model_config_file`, or `--model_name --model_base_path`), `--prefer_tflite_model=true`,
`--monitoring_config_file`, `--model_config_file_poll_wait_seconds`, `--enable_batching
--batching_parameters_file`, and always `--grpc_channel_arguments=<args>,grpc.so_reuseaddr=1`,
in that order. :func:`harness_argv` builds the same list for `python -m serving.model_server`,
so our tests see what TF's suite sees. One deliberate difference: the socket lives under the
test's temporary folder instead of TF's fixed /tmp/tf-serving.sock, so parallel runs do not
collide.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
HTTP_REST_TIMEOUT_MS = 5000  # the harness's HTTP_REST_TIMEOUT_MS
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def harness_argv(
    port: int,
    rest_port: int,
    socket_path: Path,
    *,
    model_name: str | None = None,
    model_path: str | Path | None = None,
    model_type: str = "tf",
    model_config_file: str | Path | None = None,
    monitoring_config_file: str | Path | None = None,
    batching_parameters_file: str | Path | None = None,
    grpc_channel_arguments: str = "",
    model_config_file_poll_period: int | None = None,
) -> list[str]:
    """The flags RunServer passes, in its order (see the module docstring)."""
    argv = [
        f"--port={port}",
        f"--rest_api_port={rest_port}",
        f"--rest_api_timeout_in_ms={HTTP_REST_TIMEOUT_MS}",
        f"--grpc_socket_path={socket_path}",
    ]
    if model_config_file:
        argv.append(f"--model_config_file={model_config_file}")
    elif model_path:
        argv += [f"--model_name={model_name}", f"--model_base_path={model_path}"]
    else:
        raise ValueError("Both model_config_file and model_path cannot be empty!")
    if model_type == "tflite":
        argv.append("--prefer_tflite_model=true")
    if monitoring_config_file:
        argv.append(f"--monitoring_config_file={monitoring_config_file}")
    if model_config_file_poll_period is not None:
        argv.append(f"--model_config_file_poll_wait_seconds={model_config_file_poll_period}")
    if batching_parameters_file:
        argv += ["--enable_batching", f"--batching_parameters_file={batching_parameters_file}"]
    channel_args = ",".join(arg for arg in (grpc_channel_arguments, "grpc.so_reuseaddr=1") if arg)
    argv.append(f"--grpc_channel_arguments={channel_args}")
    return argv


@dataclass
class RunningServer:
    """A model server subprocess and its addresses (TF's `localhost:port` form)."""

    process: subprocess.Popen[bytes]
    grpc_address: str
    rest_address: str
    socket_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_server(folder: Path, *, wait_for: str | None = "default", **options: object) -> RunningServer:
    """Start `python -m serving.model_server` with the harness's argv; wait for `wait_for`.

    The harness waits until the gRPC port answers; waiting until the model's status answers
    (any state) is the same moment for our server, which opens its ports after start-up loads.

    Raises:
        AssertionError: the server exited or did not answer within START_TIMEOUT_S.
    """
    port, rest_port = free_port(), free_port()
    socket_path = folder / "tf-serving.sock"
    log_path = folder / "server.log"
    argv = harness_argv(port, rest_port, socket_path, **options)  # type: ignore[arg-type]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving.model_server", *argv],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, f"localhost:{port}", f"localhost:{rest_port}", socket_path, log_path)
    if wait_for is None:
        return server
    deadline = time.monotonic() + START_TIMEOUT_S
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = wait_for
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
            try:
                stub.GetModelStatus(request, timeout=2)
                return server
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return server  # it answers (NOT_FOUND for a model it does not serve)
                if time.monotonic() > deadline:
                    server.stop()
                    raise AssertionError(
                        f"server not ready in {START_TIMEOUT_S:g}s:\n{server.log()[-3000:]}"
                    ) from None
                time.sleep(0.2)

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


def test_every_flag_of_tensorflow_model_server_is_accepted() -> None:
    """The flag list of model_servers/main.cc, each with a value that is not its default."""
    argv = [
        "--port=8500",
        "--grpc_socket_path=/tmp/s.sock",
        "--rest_api_port=8501",
        "--rest_api_num_threads=3",
        "--rest_api_timeout_in_ms=5000",
        "--rest_api_enable_cors_support=true",
        "--enable_batching=true",
        "--allow_version_labels_for_unavailable_models=true",
        "--batching_parameters_file=/b",
        "--enable_per_model_batching_parameters=true",
        "--model_config_file=/c",
        "--model_config_file_poll_wait_seconds=2",
        "--model_name=m",
        "--model_base_path=/m",
        "--num_load_threads=2",
        "--num_unload_threads=2",
        "--max_num_load_retries=1",
        "--load_retry_interval_micros=10",
        "--file_system_poll_wait_seconds=3",
        "--flush_filesystem_caches=false",
        "--tensorflow_session_parallelism=1",
        "--tensorflow_session_config_file=/s",
        "--tensorflow_intra_op_parallelism=0",
        "--tensorflow_inter_op_parallelism=0",
        "--use_alts_credentials=false",
        "--ssl_config_file=/ssl",
        "--platform_config_file=/p",
        "--per_process_gpu_memory_fraction=0.5",
        "--saved_model_tags=serve,gpu",
        "--grpc_channel_arguments=grpc.so_reuseaddr=1",
        "--grpc_max_threads=7",
        "--enable_model_warmup=false",
        "--num_request_iterations_for_warmup=3",
        "--remove_unused_fields_from_bundle_metagraph=false",
        "--prefer_tflite_model=true",
        "--num_tflite_pools=2",
        "--num_tflite_interpreters_per_pool=2",
        "--enable_signature_method_name_check=true",
        "--xla_cpu_compilation_enabled=true",
        "--xla_gpu_compilation_enabled=true",
        "--enable_profiler=false",
        "--thread_pool_factory_config_file=/t",
        "--mixed_precision=bfloat16",
        "--skip_initialize_tpu=true",
        "--enable_grpc_healthcheck_service=true",
        "--enable_serialization_as_tensor_content=true",
    ]
    options = parse_options(argv)
    assert options.grpc_socket_path == "/tmp/s.sock" and options.saved_model_tag_set == ("serve", "gpu")
    assert (options.max_num_load_retries, options.load_retry_interval_micros) == (1, 10)
    assert options.per_process_gpu_memory_fraction == 0.5 and options.prefer_tflite_model is True
    # The inert ones are named for the start-up warning; implemented ones are not.
    assert options.inert_flags_in_use() == [
        "num_unload_threads",
        "flush_filesystem_caches",
        "enable_per_model_batching_parameters",
        "ssl_config_file",
        "platform_config_file",
        "per_process_gpu_memory_fraction",
        "remove_unused_fields_from_bundle_metagraph",
        "xla_cpu_compilation_enabled",
        "xla_gpu_compilation_enabled",
        "thread_pool_factory_config_file",
        "mixed_precision",
        "skip_initialize_tpu",
        "enable_grpc_healthcheck_service",
        "enable_serialization_as_tensor_content",
    ]


def test_defaults_are_tensorflow_model_servers() -> None:
    """server.h Options: 4 x CPUs threads, 5 load retries a minute apart, warmup iterations 0."""
    from serving.model_server.config import schedulable_cpus

    options = parse_options(["--model_base_path=/m"])
    cpus = schedulable_cpus()
    assert (options.grpc_max_threads, options.rest_api_num_threads, options.num_tflite_pools) == (
        4 * cpus,
        4 * cpus,
        cpus,
    )
    assert (options.max_num_load_retries, options.load_retry_interval_micros) == (5, 60_000_000)
    assert (options.num_request_iterations_for_warmup, options.saved_model_tags) == (0, "serve")
    assert options.enable_profiler is True and options.flush_filesystem_caches is True
    assert options.inert_flags_in_use() == []
    # TF Serving ignores --model_base_path when --model_config_file is set.
    both = parse_options(["--model_base_path=/m", "--model_config_file=/c"])
    assert both.model_config_file == "/c"


def test_help_marks_inert_flags_and_version_prints_both_versions(capsys) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--ssl_config_file SSL_CONFIG_FILE [inert:" in text
    assert "--max_num_load_retries MAX_NUM_LOAD_RETRIES Retries of a failed load" in text
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("TensorFlow ModelServer: ") and out[1].startswith("TensorFlow Library: 2.")


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
    port = f"--port={_free_port()}"
    code = main([f"--model_config_file={tfserving_testdata / 'bad_model_config.txt'}", port])
    assert code == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in capsys.readouterr().err
    code = main(
        [
            "--model_name=bad",
            f"--model_base_path={tfserving_testdata / 'bad_half_plus_two'}",
            port,
            "--bind_address=127.0.0.1",
            "--max_num_load_retries=1",
            "--load_retry_interval_micros=-1",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available" in err
    assert "{{name: bad version: 123} due to error: NOT_FOUND: Could not find SavedModel" in err
    # server.cc: gRPC needs a port or a Unix socket.
    assert main(["--model_base_path=/m", "--port=0"]) == 1
    assert "At least one of server_options.grpc_port or server_options.grpc_socket_path must be set." in (
        capsys.readouterr().err
    )


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

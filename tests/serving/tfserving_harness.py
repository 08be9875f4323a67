"""Our model server started, probed and checked as TF Serving's integration harness does."""

# TF Serving's model_servers/test_util/tensorflow_model_server_test_base.py: RunServer builds
# `--port --rest_api_port --rest_api_timeout_in_ms=5000 --grpc_socket_path`, then the model
# (`--model_config_file`, or `--model_name --model_base_path`), `--prefer_tflite_model=true`,
# `--monitoring_config_file`, `--model_config_file_poll_wait_seconds`, `--enable_batching
# --batching_parameters_file`, and always `--grpc_channel_arguments=<args>,grpc.so_reuseaddr=1`,
# in that order; WaitForServerReady polls a Predict for a missing model until it answers
# "Servable ..."; VerifyPredictRequest sends x = [2.0] and checks y and the model spec.
# The one deliberate difference: the socket lives in the test's temporary folder, not at TF's
# fixed /tmp/tf-serving.sock, so parallel runs do not collide.

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
VERSION = 123  # every testdata model's only version (TF's _GetModelVersion)
HTTP_REST_TIMEOUT_MS = 5000  # the harness's HTTP_REST_TIMEOUT_MS
PREDICT_TIMEOUT_S = 5.0  # VerifyPredictRequest's rpc_timeout
RPC_TIMEOUT_S = 20.0  # the test module's RPC_TIMEOUT
START_TIMEOUT_S = 120.0  # TF waits 60 polls of 1 s; a loaded 2-core machine needs more


def free_ports(count: int) -> list[int]:
    """Ports bind(0) hands out, held together so that they differ."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("localhost", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


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
    """`python -m serving.model_server` with the flags RunServer passes, in its order."""
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
    return [sys.executable, "-m", "serving.model_server", *argv]


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


def run_server(folder: Path, **options: Any) -> RunningServer:
    """Start the server with the harness's argv and wait until it is ready.

    Ready is WaitForServerReady's answer (a Predict for `intentionally_missing_model` is refused
    with "Servable ..."), then the REST port accepting a connection: TF leaves REST to CallREST's
    60 retries, we wait once so that every REST request here is sent once.

    Raises:
        AssertionError: the server exited, or was not ready within START_TIMEOUT_S.
    """
    port, rest_port = free_ports(2)
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            harness_argv(port, rest_port, folder / "tf-serving.sock", **options),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(
        process, f"localhost:{port}", f"localhost:{rest_port}", folder / "tf-serving.sock", log_path
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    for ready in (_grpc_ready, _rest_ready):
        while not ready(server):
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"server not ready in {START_TIMEOUT_S:g} s:\n{server.log()[-3000:]}")
            time.sleep(0.2)
    return server


def _grpc_ready(server: RunningServer) -> bool:
    probe = predict_pb2.PredictRequest()
    probe.model_spec.name = "intentionally_missing_model"
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(probe, 2)
    except grpc.RpcError as error:
        return "Servable" in (error.details() or "")
    return False


def _rest_ready(server: RunningServer) -> bool:
    host, port = server.rest_address.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False
    raise AssertionError(f"server not ready in {START_TIMEOUT_S:g} s:\n{server.log()[-3000:]}")


def predict(
    address: str,
    *,
    model_name: str = "default",
    signature_name: str = "serving_default",
    specify_output: bool = True,
    batch_input: bool = False,
    alias: str = "x",
) -> predict_pb2.PredictResponse:
    """VerifyPredictRequest's request: x = [2.0] (shape [1], or [1, 1] for batch_input)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[alias].dtype = types_pb2.DT_FLOAT
    request.inputs[alias].float_val.append(2.0)
    request.inputs[alias].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs[alias].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, PREDICT_TIMEOUT_S)


def assert_predicts(
    address: str,
    expected: float,
    *,
    model_name: str = "default",
    signature_name: str = "serving_default",
    output_filters: tuple[bool, ...] = (True, False),
) -> None:
    """VerifyPredictRequest's checks, with and without output_filter ["y"] (as _TestPredict).

    A TF test that calls it once with specify_output=False is checked with both: the filter
    names the signature's only output, so the answer must not change.
    """
    for specify_output in output_filters:
        result = predict(
            address,
            model_name=model_name,
            signature_name=signature_name,
            specify_output=specify_output,
        )
        assert list(result.outputs) == ["y"]
        assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
        assert list(result.outputs["y"].float_val) == [expected]
        spec = result.model_spec
        assert (spec.name, spec.signature_name, spec.version.value) == (
            model_name,
            signature_name,
            VERSION,
        )


def rest(server: RunningServer, path: str, body: Any = None) -> Any:
    """One REST call (POST when there is a body, as CallREST), its JSON decoded."""
    data = None if body is None else json.dumps(body).encode()
    url = f"http://{server.rest_address}{path}"
    with urllib.request.urlopen(url, data, timeout=RPC_TIMEOUT_S) as answer:
        return json.loads(answer.read())


def _tensor(dtype: str, name: str, *, batch_of_one: bool = True) -> dict[str, Any]:
    if not batch_of_one:
        return {"dtype": dtype, "tensor_shape": {"dim": [], "unknown_rank": True}, "name": name}
    dims = [{"size": "-1", "name": ""}, {"size": "1", "name": ""}]
    return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}


def _signature(method: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": inputs,
        "outputs": outputs,
        "method_name": f"tensorflow/serving/{method}",
        "defaults": {},
    }


_EXAMPLES = {"inputs": _tensor("DT_STRING", "tf_example:0", batch_of_one=False)}

# testGetModelMetadataREST's expected answer (TF's half_plus_two_model_metadata.json), written out.
HALF_PLUS_TWO_METADATA: dict[str, Any] = {
    "model_spec": {"name": "default", "signature_name": "", "version": "123"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "serving_default": _signature(
                    "predict", {"x": _tensor("DT_FLOAT", "x:0")}, {"y": _tensor("DT_FLOAT", "y:0")}
                ),
                "classify_x_to_y": _signature("classify", _EXAMPLES, {"scores": _tensor("DT_FLOAT", "y:0")}),
                "regress_x_to_y": _signature("regress", _EXAMPLES, {"outputs": _tensor("DT_FLOAT", "y:0")}),
                "regress_x_to_y2": _signature("regress", _EXAMPLES, {"outputs": _tensor("DT_FLOAT", "y2:0")}),
                "regress_x2_to_y3": _signature(
                    "regress",
                    {"inputs": _tensor("DT_FLOAT", "x2:0")},
                    {"outputs": _tensor("DT_FLOAT", "y3:0")},
                ),
            }
        }
    },
}


def export_distrat_sequential(export_path: Path) -> None:
    """test_distrat_sequential_keras_saved_model_save's model: x -> Dense(ones, zeros) -> y.

    It is built under a MirroredStrategy over two virtual CPUs (TF's SetVirtualCpus(2)), and
    TensorFlow accepts virtual devices only before its runtime starts; a test process has
    usually started it, so the test runs this in a fresh interpreter (`python -m` this module).
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    with tf.distribute.MirroredStrategy(devices=("/cpu:0", "/cpu:1")).scope():
        model = tf.keras.models.Sequential()
        model.add(tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"))
        model.add(tf.keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros"))
        model.add(tf.keras.layers.Lambda(lambda x: x, name="y"))
    tf.saved_model.save(model, str(export_path))


if __name__ == "__main__":  # python -m tests.serving.tfserving_harness EXPORT_PATH
    export_distrat_sequential(Path(sys.argv[1]))

"""Small real servers speaking TF Serving's gRPC (official servicer classes) and REST APIs.

They are fixtures for the client's transport behaviour: a numpy model ``half_plus_two``
(y = 0.5 * x + 2, version 123, label ``stable``), plus models that misbehave on purpose:
``flaky`` (UNAVAILABLE / 503 for the first ``fail_times`` calls), ``slow`` (answers after the
client's deadline), ``square`` (returns an [N, N] output), ``broken`` (INTERNAL / 500).
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np

VERSION = 123


@dataclass
class Behaviour:
    """Shared, mutable knobs and call counts of one test server."""

    fail_times: int = 2
    calls: Counter = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, model: str) -> int:
        with self.lock:
            self.calls[model] += 1
            return self.calls[model]


class ModelError(Exception):
    """What a server would answer instead of outputs: a gRPC code name and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def run_model(behaviour: Behaviour, model: str, version: int | None, label: str | None, inputs: dict) -> dict:
    """The numpy 'models' behind both servers; raises ModelError like TF Serving would."""
    number = behaviour.count(model)
    if model == "flaky" and number <= behaviour.fail_times:
        raise ModelError("UNAVAILABLE", f"model flaky is warming up (call {number})")
    if model == "slow":
        behaviour.release.wait(timeout=3.0)
    if model == "broken":
        raise ModelError("INTERNAL", "kernel exploded")
    if model not in ("half_plus_two", "flaky", "slow", "square"):
        raise ModelError("NOT_FOUND", f"Servable not found for request: Latest({model})")
    if (version is not None and version != VERSION) or (label is not None and label != "stable"):
        raise ModelError(
            "NOT_FOUND", f"Servable not found for request: Specific({model}, {version or label})"
        )
    if "x" not in inputs:
        raise ModelError("INVALID_ARGUMENT", f"input 'x' is missing; got {sorted(inputs)}")
    x = np.asarray(inputs["x"], dtype=np.float32)
    y = (0.5 * x + 2.0).astype(np.float32)
    if model == "square":
        y = y[:, None] * np.ones((1, len(y)), np.float32)
    return {"y": y, "n": np.arange(len(x), dtype=np.int64)}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_grpc_server(behaviour: Behaviour, port: int = 0) -> tuple[grpc.Server, int]:
    """An in-process gRPC server built on TF Serving's OFFICIAL servicer base classes."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    def abort(context, error: ModelError):
        context.abort(getattr(grpc.StatusCode, error.code), error.message)

    def spec_version(spec) -> tuple[int | None, str | None]:
        choice = spec.WhichOneof("version_choice")
        return (spec.version.value if choice == "version" else None, spec.version_label or None)

    class Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            version, label = spec_version(request.model_spec)
            try:
                outputs = run_model(behaviour, request.model_spec.name, version, label, inputs)
            except ModelError as error:
                abort(context, error)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = VERSION
            response.model_spec.signature_name = request.model_spec.signature_name
            names = list(request.output_filter) or list(outputs)
            for name in names:
                if name not in outputs:
                    abort(context, ModelError("INVALID_ARGUMENT", f"output tensor alias not found: {name}"))
                response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
            return response

        def GetModelMetadata(self, request, context):
            if request.model_spec.name != "half_plus_two":
                abort(context, ModelError("NOT_FOUND", f"Servable not found: {request.model_spec.name}"))
            signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
            for side, name, dtype in (
                ("inputs", "x", tf.float32),
                ("outputs", "y", tf.float32),
                ("outputs", "n", tf.int64),
            ):
                info = getattr(signature, side)[name]
                info.name, info.dtype = f"{name}:0", dtype.as_datatype_enum
                info.tensor_shape.dim.add().size = -1
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            signature_map.signature_def["serving_default"].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = VERSION
            response.metadata["signature_def"].Pack(signature_map)
            return response

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            if request.model_spec.name != "half_plus_two":
                abort(
                    context,
                    ModelError(
                        "NOT_FOUND", f"Could not find any versions of model {request.model_spec.name}"
                    ),
                )
            response = get_model_status_pb2.GetModelStatusResponse()
            response.model_version_status.add(
                version=VERSION, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
            )
            old = response.model_version_status.add(
                version=100, state=get_model_status_pb2.ModelVersionStatus.END
            )
            old.status.error_code = 9
            old.status.error_message = "unloaded"
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Predictions(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, port


_HTTP_STATUS = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "UNAVAILABLE": 503, "INTERNAL": 500}
_PREDICT = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?:predict$"
)
_STATUS = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?(?P<meta>/metadata)?$"
)


def _rest_metadata(model: str) -> dict:
    def info(name: str, dtype: str) -> dict:
        return {
            "dtype": dtype,
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
            "name": f"{name}:0",
        }

    signature = {
        "inputs": {"x": info("x", "DT_FLOAT")},
        "outputs": {"y": info("y", "DT_FLOAT")},
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }
    return {
        "model_spec": {"name": model, "signature_name": "", "version": str(VERSION)},
        "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
    }


def start_rest_server(behaviour: Behaviour) -> tuple[ThreadingHTTPServer, int]:
    """A stdlib HTTP/1.1 server speaking TF Serving's columnar JSON and error bodies."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
            pass

        def reply(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (deadline) and closed the connection

        def fail(self, error: ModelError) -> None:
            self.reply(_HTTP_STATUS.get(error.code, 500), json.dumps({"error": error.message}).encode())

        def do_GET(self):
            match = _STATUS.match(self.path)
            if not match:
                return self.reply(404, b'{"error": "Malformed request"}')
            model = match["model"]
            if model not in ("half_plus_two", "flaky", "slow", "square"):
                return self.fail(ModelError("NOT_FOUND", f"Could not find any versions of model {model}"))
            if match["meta"]:
                return self.reply(200, json.dumps(_rest_metadata(model)).encode())
            body = {
                "model_version_status": [
                    {
                        "version": str(VERSION),
                        "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""},
                    }
                ]
            }
            self.reply(200, json.dumps(body).encode())

        def do_POST(self):
            payload = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            match = _PREDICT.match(self.path)
            if not match:
                return self.reply(404, b'{"error": "Malformed request"}')
            model = match["model"]
            if model == "garbage":
                return self.reply(200, b"<html>not json</html>")
            if model == "named":  # several outputs come back as an object, strings as text
                body = json.loads(payload)
                x = np.asarray(body["inputs"]["x"], np.float32)
                outputs = {
                    "y": (0.5 * x + 2).tolist(),
                    "tags": ["t" + str(int(v)) for v in x],
                    "raw": [{"b64": "/w=="}] * len(x),
                }
                return self.reply(200, json.dumps({"outputs": outputs}).encode())
            try:
                body = json.loads(payload)
                version = int(match["version"]) if match["version"] else None
                outputs = run_model(behaviour, model, version, match["label"], body.get("inputs", {}))
            except ModelError as error:
                return self.fail(error)
            # One output after filtering -> TF Serving omits its name. This server exposes only "y".
            self.reply(200, json.dumps({"outputs": outputs["y"].tolist()}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, server.server_address[1]

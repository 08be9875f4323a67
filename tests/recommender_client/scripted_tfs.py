"""A real gRPC server speaking TF Serving's API whose answers a test scripts: delays, errors,
versions and signatures (no TensorFlow: our wire-compatible messages, on grpc.server).

Predict answers ``ctr`` = 0.5 * the first float32 input when there is one named ``x``, else
0.25 for every row, with ``model_spec.version`` = ``version`` (or the version a request's label maps to in
``labels``, or the version it asked for; NOT_FOUND outside ``labels``/``versions``, each
request's spec recorded in ``specs``); it sleeps ``delay_s`` first, or
aborts with ``abort`` (a grpc.StatusCode name; ``metadata_abort`` for GetModelMetadata alone). GetModelMetadata describes ``signature``
(input name -> dtype, plus ``output``); GetModelStatus reports ``version`` as ``state``.
Counters: ``calls`` per method, ``in_flight`` and its maximum (how many Predicts overlapped).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np

from recommender_client.client.messages import pack_signature_def_map
from recommender_client.client.tensors import decode_tensor, fill_tensor
from recommender_client.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    types_pb2,
)
from recommender_client.protos.services import (
    GET_MODEL_METADATA_METHOD,
    GET_MODEL_STATUS_METHOD,
    PREDICT_METHOD,
)

DTYPES = {"float32": types_pb2.DT_FLOAT, "int64": types_pb2.DT_INT64, "string": types_pb2.DT_STRING}


@dataclass
class Script:
    """What the server answers; tests change the fields while it runs."""

    version: int = 1
    state: str = "AVAILABLE"
    delay_s: float = 0.0
    abort: str | None = None
    metadata_abort: str | None = None
    signature: Mapping[str, str] = field(default_factory=lambda: {"x": "float32"})
    output: tuple[str, str] = ("ctr", "float32")
    labels: Mapping[str, int] = field(default_factory=dict)
    versions: frozenset[int] | None = None
    specs: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, method: str) -> None:
        with self.lock:
            self.calls[method] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


def _served_version(script: Script, spec, context: grpc.ServicerContext) -> int:
    """The version a Predict's model_spec selects, recorded in ``specs``; NOT_FOUND (TF Serving's
    texts) for a label not in ``labels`` or a version not in ``versions``."""
    which = spec.WhichOneof("version_choice")
    label = spec.version_label if which == "version_label" else None
    asked = spec.version.value if which == "version" else None
    with script.lock:
        script.specs.append((spec.name, asked, label))
    if label is not None and label not in script.labels:
        context.abort(grpc.StatusCode.NOT_FOUND, f"Unrecognized servable version label: {label}")
    version = script.labels[label] if label is not None else asked if asked is not None else script.version
    if script.versions is not None and version not in script.versions:
        context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: Specific({spec.name}, {version})",
        )
    return version


def _handlers(script: Script) -> grpc.GenericRpcHandler:
    def predict(request: predict_pb2.PredictRequest, context: grpc.ServicerContext):
        script.enter("Predict")
        try:
            if script.delay_s:
                time.sleep(script.delay_s)
            if script.abort:
                context.abort(getattr(grpc.StatusCode, script.abort), f"scripted {script.abort}")
            version = _served_version(script, request.model_spec, context)
            inputs = {name: decode_tensor(t, name=name) for name, t in request.inputs.items()}
            rows = len(next(iter(inputs.values()))) if inputs else 0
            x = inputs.get("x")
            ctr = (0.5 * x).astype(np.float32) if x is not None else np.full(rows, 0.25, np.float32)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = version
            fill_tensor(response.outputs[script.output[0]], ctr, name=script.output[0])
            return response
        finally:
            script.leave()

    def metadata(request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext):
        script.calls["GetModelMetadata"] += 1
        abort = script.metadata_abort or script.abort
        if abort:
            context.abort(getattr(grpc.StatusCode, abort), f"scripted {abort}")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        signature = signature_map.signature_def["serving_default"]
        signature.method_name = "tensorflow/serving/predict"
        for side, specs in (("inputs", dict(script.signature)), ("outputs", dict([script.output]))):
            for name, dtype in specs.items():
                info = getattr(signature, side)[name]
                info.name, info.dtype = f"{name}:0", DTYPES[dtype]
                info.tensor_shape.dim.add().size = -1
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = script.version
        pack_signature_def_map(signature_map, response.metadata["signature_def"])
        return response

    def status(request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext):
        script.calls["GetModelStatus"] += 1
        if script.abort:
            context.abort(getattr(grpc.StatusCode, script.abort), f"scripted {script.abort}")
        response = get_model_status_pb2.GetModelStatusResponse()
        state = get_model_status_pb2.ModelVersionStatus.State.Value(script.state)
        response.model_version_status.add(version=script.version, state=state)
        return response

    def unary(fn, request_type) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=request_type.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )

    methods = {
        PREDICT_METHOD: unary(predict, predict_pb2.PredictRequest),
        GET_MODEL_METADATA_METHOD: unary(metadata, get_model_metadata_pb2.GetModelMetadataRequest),
        GET_MODEL_STATUS_METHOD: unary(status, get_model_status_pb2.GetModelStatusRequest),
    }

    class Handler(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            return methods.get(handler_call_details.method)

    return Handler()


@contextmanager
def scripted_server(script: Script | None = None) -> Iterator[tuple[Script, int]]:
    """Serve ``script`` on a free loopback port; yields (script, port) and stops the server after."""
    script = script if script is not None else Script()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_handlers(script),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield script, port
    finally:
        server.stop(grace=0).wait()

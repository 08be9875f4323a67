"""The client imports and works without TensorFlow: checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, sys
from concurrent import futures

import grpc
import numpy as np

from recommender_client.client import GrpcClient, RestClient, build_request_columns, validate_outputs
from recommender_client.protos import predict_pb2
from tests.recommender_client.client.servers import Behaviour, start_rest_server
from training.features import Feature, FeatureContract

contract = FeatureContract(features=(
    Feature("x", "numeric", "item"),
    Feature("tag", "categorical_string", "item", hash_buckets=10),
))
columns = build_request_columns(contract, [{"x": 1.0, "tag": "a"}, {"x": 2}, {"x": 5.0}])


def predict(request, context):  # a TF-free gRPC server on our own messages
    x = np.frombuffer(request.inputs["x"].tensor_content, "<f4")
    response = predict_pb2.PredictResponse()
    response.outputs["ctr"].dtype = 1
    response.outputs["ctr"].tensor_shape.dim.add().size = len(x)
    response.outputs["ctr"].float_val.extend((0.5 * x + 2).tolist())
    return response

handler = grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
    "Predict": grpc.unary_unary_rpc_method_handler(
        predict,
        request_deserializer=predict_pb2.PredictRequest.FromString,
        response_serializer=predict_pb2.PredictResponse.SerializeToString,
    )
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
with GrpcClient(f"127.0.0.1:{port}", timeout=5.0) as client:
    grpc_scores = validate_outputs(client.predict(columns, model_name="m"), num_rows=3)["ctr"]
server.stop(grace=0).wait()

http_server, http_port = start_rest_server(Behaviour())
with RestClient(f"http://127.0.0.1:{http_port}", timeout=5.0) as client:
    rest_y = client.predict({"x": columns["x"]}, model_name="half_plus_two")["y"]
http_server.shutdown()
http_server.server_close()

print(json.dumps({
    "grpc": grpc_scores.tolist(),
    "rest": rest_y.tolist(),
    "tf_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving", "keras")),
}))
"""


def test_client_runs_without_importing_tensorflow(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["tf_modules"] == []
    assert report["grpc"] == [2.5, 3.0, 4.5]
    assert report["rest"] == [2.5, 3.0, 4.5]

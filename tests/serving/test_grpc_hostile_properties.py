"""Generated malformed PredictRequests against a running server's gRPC face (issue 15 item 6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.model_server.config import ServerOptions
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray, to_ndarray

MODEL = "half_plus_two"
BUDGET = 1 << 20  # 1 MiB: a generated request allowed to the limit stays quick
MAX_DETAILS = 1_000  # "a short details string"
REFUSED = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
# One strategy per typed field of TensorProto, with values of that field's wire type.
FIELDS = {
    "float_val": st.floats(width=32),
    "double_val": st.floats(),
    "int_val": INT32,
    "half_val": INT32,
    "int64_val": INT64,
    "bool_val": st.booleans(),
    "string_val": st.binary(max_size=16),
    "scomplex_val": st.floats(width=32),
    "dcomplex_val": st.floats(),
    "uint32_val": st.integers(0, 2**32 - 1),
    "uint64_val": st.integers(0, 2**64 - 1),
}
DIM = st.one_of(
    st.sampled_from([4_194_304, 2**31, 2**40, 2**62]),  # huge dims, mostly with no values
    st.integers(1, 6),
    st.integers(-3, 0),
    st.integers(0, 2**63 - 1),
)
SHAPES = st.one_of(
    st.lists(DIM, min_size=1, max_size=4),
    st.lists(DIM, max_size=0),
    st.integers(250, 260).map(lambda rank: [1] * rank),  # around TensorShape's 254 dimensions
)
COMMON_DTYPES = [
    types_pb2.DT_FLOAT,
    types_pb2.DT_STRING,
    types_pb2.DT_INT64,
    types_pb2.DT_DOUBLE,
    types_pb2.DT_UINT8,
    types_pb2.DT_HALF,
    types_pb2.DT_COMPLEX64,
]
DTYPES = st.one_of(
    st.sampled_from(COMMON_DTYPES),
    st.sampled_from(sorted(types_pb2.DataType.values())),
    st.integers(-3, 200),
)


@st.composite
def tensors(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    """A TensorProto with any dtype and shape and values that may not match either."""
    proto = tensor_pb2.TensorProto()
    proto.dtype = draw(DTYPES)
    for size in draw(SHAPES):
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_shape.unknown_rank = draw(st.integers(0, 7)) == 0
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        getattr(proto, name).extend(draw(st.lists(FIELDS[name], max_size=12)))
    if draw(st.integers(0, 3)) == 0:
        proto.tensor_content = draw(st.binary(max_size=64))
    return proto


@st.composite
def requests(draw: st.DrawFn) -> predict_pb2.PredictRequest:
    """A PredictRequest for the served model (mostly) with 0-3 hostile inputs."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from([MODEL, MODEL, MODEL, "", "other"]))
    request.model_spec.signature_name = draw(st.sampled_from(["", "serving_default", "nope"]))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.sampled_from([123, 1, -1]))
    aliases = ["x", *draw(st.lists(st.sampled_from(["y", "\u00e9" * 300]), max_size=2, unique=True))]
    for alias in aliases:
        request.inputs[alias].CopyFrom(draw(tensors()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["y", "x", ""]), max_size=2)))
    return request


@pytest.fixture(scope="module", params=["direct", "batching"])
def stub(tfserving_testdata: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """The server without and with batching (the inline face defers a batched Predict)."""
    options = ServerOptions(
        port=0,
        model_name=MODEL,
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        enable_profiler=False,
        enable_batching=request.param == "batching",
        max_request_tensor_bytes=BUDGET,
    )
    with ModelServer(options) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def good_predict(stub: object) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(from_ndarray(np.array([1.0, 2.0, 3.0], np.float32)))
    return to_ndarray(stub.Predict(request, timeout=30).outputs["y"]).tolist()  # type: ignore[attr-defined]


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_malformed_predicts_answer_a_client_error(stub: object, request: predict_pb2.PredictRequest) -> None:
    try:
        stub.Predict(request, timeout=30)  # type: ignore[attr-defined]
    except grpc.RpcError as error:
        assert error.code() not in REFUSED, (error.code(), error.details()[:300])
        assert error.details() and len(error.details()) <= MAX_DETAILS, error.details()[:300]
    assert good_predict(stub) == [2.5, 3.0, 3.5]

"""Hostile gRPC requests and the secure defaults, against real servers (issue 15)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.model_server.config import ConfigError, ServerOptions
from serving.model_server.errors import ServingError
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray, to_ndarray

REPO = Path(__file__).resolve().parents[2]
TEN = [f"f{i}" for i in range(10)]
ROWS = 4_194_304  # the probe: 10 inputs of this many rows and no values, 251 bytes


def export_ten_inputs(path: Path) -> Path:
    """A SavedModel whose serving_default adds ten float32 [None] inputs f0..f9 into y."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None], tf.float32, name=name) for name in TEN]

    class Sum(tf.Module):
        @tf.function(input_signature=spec)
        def serve(self, f0, f1, f2, f3, f4, f5, f6, f7, f8, f9):  # type: ignore[no-untyped-def]
            return {"y": tf.add_n([f0, f1, f2, f3, f4, f5, f6, f7, f8, f9])}

    module = Sum()
    tf.saved_model.save(module, str(path / "1"), signatures={"serving_default": module.serve})
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (/proc/net/tcp and tcp6; an IPv6
    socket bound to an IPv4-mapped address, as gRPC binds 127.0.0.1, reads as the IPv4 one)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    words = bytes.fromhex(address)
                    raw = b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4))
                    text = socket.inet_ntop(socket.AF_INET6, raw)
                    found.add(text.removeprefix("::ffff:") if "." in text else text)  # v4-mapped
    return found


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than 127.x, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def request_of(tensors: dict[str, object], name: str = "sum") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for alias, tensor in tensors.items():
        request.inputs[alias].CopyFrom(tensor if not isinstance(tensor, np.ndarray) else from_ndarray(tensor))
    return request


def shape_only(dims: list[int], dtype: int = types_pb2.DT_FLOAT) -> object:
    """A TensorProto with a shape and no values (TF pads it with zeros)."""
    proto = from_ndarray(np.zeros(0, np.float32))
    proto.dtype = dtype
    proto.tensor_shape.ClearField("dim")
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


# ---------------------------------------------------------------- the CLI server, in its own process
@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, int, int]]:
    """``python -m serving.model_server`` with the ten-input model, default flags but the ports."""
    base = export_ten_inputs(tmp_path_factory.mktemp("sum") / "sum")
    grpc_port, rest_port = free_port(), free_port()
    log = (tmp_path_factory.mktemp("log") / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.model_server",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=sum",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=0",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name = "sum"
            deadline = time.monotonic() + 180
            while True:
                assert process.poll() is None, "the server exited"
                try:
                    stub.GetModelStatus(status, timeout=5)
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "the server did not become ready"
                    time.sleep(0.5)
        yield process, grpc_port, rest_port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_ten_shape_only_inputs_are_refused_before_allocating(cli_server) -> None:
    """The issue's 251-byte Predict (10 x [4194304], no values; 160 MiB once padded) is refused
    by the default budget (64 MiB) naming the input at which it passed, and costs no memory."""
    process, grpc_port, _ = cli_server
    request = request_of({name: shape_only([ROWS]) for name in TEN})
    assert request.ByteSize() < 300
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        good = request_of({name: np.full(3, float(i), np.float32) for i, name in enumerate(TEN)})
        assert to_ndarray(stub.Predict(good, timeout=30).outputs["y"]).tolist() == [45.0] * 3
        before = rss_mb(process.pid)
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        after = rss_mb(process.pid)
        assert to_ndarray(stub.Predict(good, timeout=30).outputs["y"]).tolist() == [45.0] * 3
    # Four 16 MiB inputs fill the 64 MiB exactly; the fifth decoded (in map order) passes it.
    details = info.value.details()
    assert details.endswith("over the limit of 67108864 bytes (--max_request_tensor_bytes)")
    assert f"tensors {5 * ROWS * 4} bytes decoded" in details
    print(f"server RSS around 5 x the 10 x [4194304] request: {before:.1f} -> {after:.1f} MB")
    assert after - before < 16, (before, after)  # one padded input would be 16 MiB


def test_default_bind_address_is_loopback(cli_server) -> None:
    """With no --bind_address both faces listen on 127.0.0.1 only (TF Serving listens on all)."""
    process, grpc_port, rest_port = cli_server
    assert listening_addresses(grpc_port) == {"127.0.0.1"}
    assert listening_addresses(rest_port) == {"127.0.0.1"}
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/sum", timeout=10) as answer:
        assert json.load(answer)["model_version_status"][0]["state"] == "AVAILABLE"
    other = non_loopback_address()
    if other is not None:  # the machine's own address is refused
        with pytest.raises(OSError):
            socket.create_connection((other, rest_port), timeout=5).close()


def test_bind_address_flag_still_binds_all_interfaces(tfserving_testdata: Path) -> None:
    """The images' --bind_address=0.0.0.0 listens on every interface (independent check of the
    /proc reading above: the same route sees 0.0.0.0 here)."""
    options = ServerOptions(
        port=0,
        rest_api_port=0,
        bind_address="0.0.0.0",
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        enable_profiler=False,
    )
    with ModelServer(options, enable_rest=True) as server:
        for port in (server.grpc_port, server.rest_port):  # gRPC may take 0.0.0.0 as dual-stack [::]
            assert listening_addresses(port) and listening_addresses(port) <= {"0.0.0.0", "::"}


def test_options_default_to_loopback() -> None:
    assert ServerOptions(model_base_path="/m").bind_address == "127.0.0.1"


# ---------------------------------------------------------------- a small budget, both faces
BUDGET = 4096  # bytes: 1,024 float32 values


@pytest.fixture(scope="module")
def small(tfserving_testdata: Path) -> Iterator[ModelServer]:
    options = ServerOptions(
        port=0,
        rest_api_port=0,
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        enable_profiler=False,
        max_request_tensor_bytes=BUDGET,
        model_config_roots=str(tfserving_testdata / "saved_model_half_plus_three"),
    )
    with ModelServer(options, enable_rest=True) as server:
        yield server


@pytest.fixture(scope="module")
def stub(small: ModelServer) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{small.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_error(stub, tensor: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request_of({"x": tensor}, "half_plus_two"), timeout=30)
    return info.value.code(), info.value.details()


def test_grpc_budget_refuses_one_value_over(stub) -> None:
    at_limit = np.arange(BUDGET // 4, dtype=np.float32)
    answer = stub.Predict(request_of({"x": at_limit}, "half_plus_two"), timeout=30)
    np.testing.assert_array_equal(to_ndarray(answer.outputs["y"]), at_limit * 0.5 + 2)
    code, details = predict_error(stub, np.arange(BUDGET // 4 + 1, dtype=np.float32))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"input x would make the request's tensors {BUDGET + 4} bytes decoded, over the limit of "
        f"{BUDGET} bytes (--max_request_tensor_bytes)",
    )


def test_grpc_budget_counts_padding_and_strings(stub) -> None:
    """A shape over the budget with one value (padded by TF's rule) and a string tensor: 8 bytes
    of reference per element plus its bytes (3 x (8 + 1000) = 3,024 fits; padded to 5, 5,040
    does not)."""
    code, details = predict_error(stub, shape_only([1025]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tensors 4100 bytes decoded" in details
    fits = predict_error(stub, np.array([b"a" * 1000] * 3, dtype=object))
    assert fits == (grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be float but string is provided")
    padded = from_ndarray(np.array([b"a" * 1000], dtype=object))
    padded.tensor_shape.dim[0].size = 5
    code, details = predict_error(stub, padded)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tensors 5040 bytes decoded" in details


def test_rest_budget_refuses_one_value_over(small: ModelServer) -> None:
    url = f"http://127.0.0.1:{small.rest_port}/v1/models/half_plus_two:predict"

    def post(values: list[float]) -> tuple[int, dict]:
        body = json.dumps({"instances": values}).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    assert post([1.0] * (BUDGET // 4)) == (200, {"predictions": [2.5] * (BUDGET // 4)})
    assert post([1.0] * (BUDGET // 4 + 1)) == (
        400,
        {
            "error": f"input x would make the request's tensors {BUDGET + 4} bytes decoded, over "
            f"the limit of {BUDGET} bytes (--max_request_tensor_bytes)"
        },
    )


@pytest.mark.parametrize(
    "dims",
    [
        [2**62, 2**62],  # more than 2**63 - 1 elements
        [1] * 255,  # more than TensorShape's 254 dimensions
        [-5],
        [3, -1],
    ],
)
def test_invalid_shapes_are_tf_parsing_errors(stub, dims: list[int]) -> None:
    assert predict_error(stub, shape_only(dims)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "tensor parsing error: x",
    )


@pytest.mark.parametrize(
    "dtype",
    [types_pb2.DT_FLOAT, types_pb2.DT_STRING, types_pb2.DT_COMPLEX128, types_pb2.DT_BOOL, types_pb2.DT_HALF],
)
def test_huge_dims_without_values_are_refused_quickly(stub, dtype: int) -> None:
    """2**40 elements of any dtype: TF would fail to allocate ("tensor parsing error"); the budget
    refuses it before numpy is asked (it was INTERNAL: MemoryError)."""
    code, details = predict_error(stub, shape_only([2**20, 2**20], dtype))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.endswith(f"over the limit of {BUDGET} bytes (--max_request_tensor_bytes)")


def test_narrow_integers_are_cast_as_tensorflow_casts(stub) -> None:
    """int_val 300 for a uint8 tensor is 44 in TensorFlow; numpy refused it (INTERNAL before)."""
    proto = shape_only([2], types_pb2.DT_UINT8)
    proto.int_val.extend([300, 7])
    assert predict_error(stub, proto) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but uint8 is provided",
    )
    assert to_ndarray(proto).tolist() == [44, 7]


def test_unknown_alias_is_not_parsed(stub) -> None:
    """GetInputValues parses only the signature's inputs: a huge unknown one is named, not decoded."""
    request = request_of({"x": np.ones(2, np.float32), "zz": shape_only([2**40])}, "half_plus_two")
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("input size does not match signature: 2!=1")


def test_long_alias_is_quoted_bounded(stub) -> None:
    request = request_of({"x" * 100_000: shape_only([-1])}, "half_plus_two")
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details()) < 2_000


# ---------------------------------------------------------------- HandleReloadConfigRequest roots
def reload(small: ModelServer, *entries: tuple[str, str]) -> object:
    request = model_management_pb2.ReloadConfigRequest()
    for name, base_path in entries:
        request.config.model_config_list.config.add(
            name=name, base_path=base_path, model_platform="tensorflow"
        )
    with grpc.insecure_channel(f"127.0.0.1:{small.grpc_port}") as channel:
        return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=120
        )


def test_reload_outside_the_roots_is_permission_denied(
    small: ModelServer, tmp_path: Path, tfserving_testdata
) -> None:
    outside = tmp_path / "elsewhere"
    link = tfserving_testdata / "saved_model_half_plus_three" / ".." / "saved_model_half_plus_two_2_versions"
    escape = tmp_path / "link"
    os.symlink(tfserving_testdata / "saved_model_half_plus_two_2_versions", escape)
    for path in (str(outside), str(link), str(escape)):
        with pytest.raises(grpc.RpcError) as info:
            reload(
                small,
                ("half_plus_two", str(tfserving_testdata / "saved_model_half_plus_two_cpu")),
                ("evil", path),
            )
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details().startswith(
            f"HandleReloadConfigRequest may not load model evil from base_path {path}:"
        )
    status = small.manager.status("half_plus_two", None)
    assert [s.state for s in status] == ["AVAILABLE"]  # nothing was unloaded
    with pytest.raises(ServingError, match="Servable not found for request: Latest"):
        small.manager.get_servable("evil")


def test_reload_inside_the_roots_loads(small: ModelServer, tfserving_testdata: Path) -> None:
    """The starting base path and --model_config_roots are roots; an OK reload swaps the models."""
    started = str(tfserving_testdata / "saved_model_half_plus_two_cpu")
    three = str(tfserving_testdata / "saved_model_half_plus_three")
    assert reload(small, ("half_plus_two", started), ("half_plus_three", three)).status.error_code == 0
    with grpc.insecure_channel(f"127.0.0.1:{small.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answer = stub.Predict(request_of({"x": np.array([2.0], np.float32)}, "half_plus_three"), timeout=30)
    assert to_ndarray(answer.outputs["y"]).tolist() == [4.0]
    assert reload(small, ("half_plus_two", started)).status.error_code == 0


def test_many_aliases_are_quoted_bounded(stub) -> None:
    """predict_util.cc's texts join every name the request sent; 2,000 names of 100 characters
    would make a 200 KB status. The names are cut to 200 characters (+ a count)."""
    request = request_of({f"{i:04d}" + "n" * 96: shape_only([1]) for i in range(2000)}, "half_plus_two")
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=30)
    details = info.value.details()
    assert details.startswith("input size does not match signature: 2000!=1 len({0000nnn")
    assert "...(201799 more characters)}) != len({x})" in details  # 2,000 x 100 + 1,999 commas
    assert len(details) < 1_000


def test_flags_refuse_relative_roots_and_an_empty_budget() -> None:
    with pytest.raises(ConfigError, match=r"^--model_config_roots=/a,b must list absolute paths or URIs$"):
        ServerOptions(model_base_path="/m", model_config_roots="/a,b")
    with pytest.raises(ConfigError, match=r"^--max_request_tensor_bytes=0 must be positive$"):
        ServerOptions(model_base_path="/m", max_request_tensor_bytes=0)
    options = ServerOptions(model_base_path="/m", model_config_roots="/a,,s3://bucket/models")
    assert options.model_config_root_list == ("/a", "s3://bucket/models")
    assert options.max_request_tensor_bytes == 64 * 2**20


def test_reload_roots_compare_whole_path_segments() -> None:
    """A root covers itself and what is below it, by whole segments, after '..' is resolved."""
    from serving.model_server.config import parse_model_server_config
    from serving.model_server.config_rules import check_reload_roots, reload_roots

    started = parse_model_server_config(
        'model_config_list { config { name: "a" base_path: "/srv/models/a" model_platform: "tensorflow" } }'
    )
    roots = reload_roots(started, ["s3://bucket/models"])
    assert roots == ("/srv/models/a", "s3://bucket/models")

    def config(path: str) -> object:
        return parse_model_server_config(
            f'model_config_list {{ config {{ name: "m" base_path: "{path}" model_platform: "tensorflow" }} }}'
        )

    for allowed in ("/srv/models/a", "/srv/models/a/sub", "s3://bucket/models/ctr", "relative/left/to/tf"):
        check_reload_roots(config(allowed), roots)
    for denied in ("/srv/models/ab", "/srv/models/a/../b", "s3://bucket/modelsX", "s3://bucket/models/../x"):
        with pytest.raises(ServingError) as info:
            check_reload_roots(config(denied), roots)
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED, denied
        assert f"from base_path {denied}: it is not under the model roots" in info.value.message

"""create_grpc_server's faces: Unix socket, face choice, the start-up self-test and its fallback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.model_server import grpc_inline
from serving.model_server.config import ServerOptions
from serving.model_server.grpc_face import SELF_TEST_METHOD, loopback_host
from serving.model_server.grpc_inline import InlineGrpcServer
from serving.model_server.grpc_service import create_grpc_server
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray

MODEL = "half_plus_two"
FACES = ["inline", "stock"]
needs_inline = pytest.mark.skipif(not grpc_inline.available(), reason="grpc lacks the core API")


@pytest.fixture(scope="module")
def manager(tfserving_testdata: Path) -> Iterator[Any]:
    """A loaded half_plus_two manager: each test builds its own gRPC servers over it."""
    options = ServerOptions(
        port=0,
        bind_address="127.0.0.1",
        model_name=MODEL,
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
    )
    with ModelServer(options) as running:
        yield running.manager


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Servers a test appends (started) are stopped after it."""
    servers: list[Any] = []
    yield servers
    for server in servers:
        assert server.stop(None).wait(10)


def _predict(target: str) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(from_ndarray(np.array([[1.0], [4.0]], np.float32)))
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return list(response.outputs["y"].float_val)


def _serve(manager: Any, started: list[Any], **kwargs: Any) -> tuple[Any, int]:
    server, port = create_grpc_server(manager, bind_address="127.0.0.1", **{"port": 0, **kwargs})
    server.start()
    started.append(server)
    return server, port


def _stale_socket(path: Path) -> None:
    """What a killed server leaves: a socket file nobody listens on."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    assert path.is_socket()


@pytest.mark.parametrize("face", FACES)
def test_predict_over_a_unix_socket_only(manager, started, tmp_path: Path, face: str) -> None:
    if face == "inline" and not grpc_inline.available():
        pytest.skip("grpc lacks the core API")
    path = tmp_path / "tf-serving.sock"
    _stale_socket(path)  # reused path (TF Serving's harness): removed, then bound
    server, port = _serve(manager, started, socket_path=str(path), tcp=False, face=face)
    assert (server.face, port) == (face, 0)
    assert _predict(f"unix:{path}") == [2.5, 4.0]


@pytest.mark.parametrize("face", FACES)
def test_tcp_and_unix_socket_together(manager, started, tmp_path: Path, face: str) -> None:
    if face == "inline" and not grpc_inline.available():
        pytest.skip("grpc lacks the core API")
    path = tmp_path / "both.sock"
    server, port = _serve(manager, started, socket_path=str(path), face=face)
    assert port > 0
    assert _predict(f"unix:{path}") == _predict(f"127.0.0.1:{port}") == [2.5, 4.0]


def test_a_file_at_the_socket_path_is_not_removed(manager, tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    with pytest.raises(RuntimeError, match=f"could not bind gRPC server to unix:{path}"):
        create_grpc_server(manager, bind_address="127.0.0.1", port=0, socket_path=str(path), tcp=False)
    assert path.read_text() == "keep me"


def test_arguments_are_checked(manager) -> None:
    with pytest.raises(ValueError, match="'fast' is not one of auto, inline, stock"):
        create_grpc_server(manager, bind_address="127.0.0.1", port=0, face="fast")
    with pytest.raises(ValueError, match="needs a TCP port or a Unix socket path"):
        create_grpc_server(manager, bind_address="127.0.0.1", port=0, tcp=False)


def test_inline_required_where_grpc_lacks_it(manager, monkeypatch) -> None:
    monkeypatch.setattr(grpc_inline, "available", lambda: False)
    with pytest.raises(
        RuntimeError, match=r"lacks the core API the inline gRPC server uses; --grpc_face=stock"
    ):
        create_grpc_server(manager, bind_address="127.0.0.1", port=0, face="inline")
    server, _ = create_grpc_server(manager, bind_address="127.0.0.1", port=0, face="auto")
    assert server.face == "stock"
    server.stop(None)


@pytest.mark.parametrize("face", FACES)
def test_extra_handlers_are_served(manager, started, face: str) -> None:
    if face == "inline" and not grpc_inline.available():
        pytest.skip("grpc lacks the core API")
    ping = grpc.method_handlers_generic_handler(
        "t.Extra", {"Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b"pong:" + request)}
    )
    _, port = _serve(manager, started, face=face, extra_handlers=(ping,))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert channel.unary_unary("/t.Extra/Ping")(b"1", timeout=10) == b"pong:1"


class _Mute(InlineGrpcServer):
    """An inline server whose grpc internals changed so that no call gets an answer: it keeps
    each call (a call grpc's objects drop is cancelled, which the client would hear)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[Any] = []
        self._calls.respond = lambda received, event: self.held.append(received)  # type: ignore[method-assign]


class _Failing(InlineGrpcServer):
    """An inline server whose message reads raise (it answers INTERNAL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        def run(context: Any, received: Any, event: Any) -> None:
            raise AttributeError("'BatchOperationEvent' object has no attribute 'batch_operations'")

        self._calls._run = run  # type: ignore[method-assign]


@needs_inline
@pytest.mark.parametrize("broken", [_Mute, _Failing])
def test_auto_falls_back_to_grpc_server_on_the_same_port(
    manager, started, monkeypatch, caplog, broken: type
) -> None:
    monkeypatch.setattr(grpc_inline, "InlineGrpcServer", broken)
    server, port = create_grpc_server(manager, bind_address="127.0.0.1", port=0, self_test_timeout=0.5)
    assert server.face == "inline"
    with caplog.at_level(logging.WARNING, logger="serving.model_server.grpc_face"):
        server.start()
    started.append(server)
    assert server.face == "stock"
    problem = "DEADLINE_EXCEEDED" if broken is _Mute else "INTERNAL: Internal error in the gRPC server"
    assert (
        f"failed its start-up self-test (grpc {grpc.__version__}, 0.5 s deadline): {problem}" in caplog.text
    )
    assert "serving with grpc.server instead" in caplog.text
    assert _predict(f"127.0.0.1:{port}") == [2.5, 4.0]


@needs_inline
def test_inline_required_fails_start_with_the_reason(manager, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(grpc_inline, "InlineGrpcServer", _Failing)
    path = tmp_path / "s.sock"
    server, _ = create_grpc_server(
        manager, bind_address="127.0.0.1", port=0, socket_path=str(path), tcp=False, face="inline"
    )
    with pytest.raises(
        RuntimeError,
        match=r"failed its start-up self-test .*: INTERNAL: Internal error in the gRPC server; --grpc_face=stock",
    ):
        server.start()
    assert server.stop(1.0).wait(0)  # nothing left running: the caller's stop returns at once


@needs_inline
def test_self_test_passes_and_its_method_looks_absent(manager, started) -> None:
    server, port = _serve(manager, started)
    assert server.face == "inline"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(SELF_TEST_METHOD)(b"guess", timeout=10)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


@pytest.mark.parametrize(
    ("bind", "host"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("[::]", "[::1]"),
        ("10.1.2.3", "10.1.2.3"),
        ("::1", "[::1]"),
    ],
)
def test_loopback_host(bind: str, host: str) -> None:
    assert loopback_host(bind) == host

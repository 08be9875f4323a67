"""The REST port's transport limits: chunked bodies, half-sent requests, idle and busy connections."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.model_server.config import ServerOptions
from serving.model_server.http_protocol import HttpLimits
from serving.model_server.rest_server import RestServer
from serving.model_server.server import ModelServer

PREDICT = "/v1/models/half_plus_two:predict"
GOOD = b'{"instances": [1.0]}'


@pytest.fixture(scope="module")
def model_server(tfserving_testdata: Path) -> Iterator[ModelServer]:
    options = ServerOptions(
        port=0,
        bind_address="127.0.0.1",
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
    )
    with ModelServer(options) as running:
        yield running


@pytest.fixture()
def start(model_server: ModelServer) -> Iterator[Callable[..., RestServer]]:
    """Starts REST faces with small limits (keyword arguments override HttpLimits fields)."""
    started: list[RestServer] = []

    def start_one(**limits: Any) -> RestServer:
        limits = {"keep_alive_timeout_s": 0.5, "request_timeout_s": 0.8, **limits}
        server = RestServer(
            model_server.manager,
            bind_address="127.0.0.1",
            port=0,
            max_body_bytes=1000,
            limits=HttpLimits(**limits),
        )
        started.append(server)
        server.start()
        return server

    yield start_one
    for server in started:
        server.stop()


@pytest.fixture()
def rest(start: Callable[..., RestServer]) -> RestServer:
    return start()


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def split(reply: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


def predict_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", PREDICT, body=GOOD)
        return json.loads(conn.getresponse().read()) == {"predictions": [2.5]}
    finally:
        conn.close()


def chunked(*chunks: bytes, size: str | None = None) -> bytes:
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    if size is not None:
        return head + size.encode() + b"\r\n" + b"a" * 100 + b"\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def test_chunk_size_minus_one_is_400_and_the_server_answers_on(rest: RestServer) -> None:
    # The old transport read a -1 chunk to the end of the stream, past every limit; libevent
    # answers 400 (DATA_CORRUPTED) and so does this.
    status, headers, body = split(exchange(rest.port, chunked(size="-1")))
    assert status == "HTTP/1.1 400 Bad Request" and headers["connection"] == "close"
    assert json.loads(body) == {"error": "Malformed HTTP request: Invalid character in chunk size"}
    assert predict_ok(rest.port)


def test_chunked_body_over_the_limit_is_413(rest: RestServer) -> None:
    status, headers, body = split(exchange(rest.port, chunked(b"[" * 600, b"[" * 600)))
    assert status == "HTTP/1.1 413 Request Entity Too Large" and headers["connection"] == "close"
    assert json.loads(body) == {"error": "Request body of 1200 bytes exceeds the limit of 1000 bytes"}
    # Within the limit, chunked still works.
    status, _, body = split(exchange(rest.port, chunked(b'{"instances"', b": [3.0]}")))
    assert status == "HTTP/1.1 200 OK" and json.loads(body) == {"predictions": [3.5]}
    assert predict_ok(rest.port)


def thread_count() -> int:
    return (
        len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()
    )


def test_half_sent_requests_hold_no_threads_and_are_dropped(start: Callable[..., RestServer]) -> None:
    rest = start(request_timeout_s=1.5)
    assert predict_ok(rest.port)  # the loop and a worker exist
    before = thread_count()
    partial = [
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Le".encode(),  # head cut short
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[".encode(),  # body cut short
    ]
    sockets = [socket.create_connection(("127.0.0.1", rest.port), timeout=10) for _ in range(300)]
    try:
        for i, sock in enumerate(sockets):
            sock.sendall(partial[i % 2])
        time.sleep(0.3)
        # The old transport had one thread per connection here (3,000 made 3,028 threads).
        assert thread_count() <= before + 1
        assert predict_ok(rest.port)
        time.sleep(1.5)
        for sock in sockets:  # dropped after request_timeout_s, with no answer (as libevent)
            assert sock.recv(1024) == b""
    finally:
        for sock in sockets:
            sock.close()
    assert predict_ok(rest.port)


def test_idle_keep_alive_connections_are_closed(rest: RestServer) -> None:
    with socket.create_connection(("127.0.0.1", rest.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""  # never sent a byte
        assert 0.4 < time.monotonic() - started < 5
    with socket.create_connection(("127.0.0.1", rest.port), timeout=10) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode() + GOOD
        )
        reply = b""
        while not reply.endswith(b"]\n}"):
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 OK")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # idle after its answer
        assert 0.4 < time.monotonic() - started < 5


def test_keep_alive_reuses_one_connection(rest: RestServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rest.port, timeout=10)
    try:
        conn.request("GET", "/v1/models/half_plus_two")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") is None
        response.read()
        first = conn.sock
        for x in (1.0, 2.0, 3.0):
            time.sleep(0.2)  # under the idle timeout each time, over it in total
            conn.request("POST", PREDICT, body=json.dumps({"instances": [x]}).encode())
            assert json.loads(conn.getresponse().read()) == {"predictions": [x / 2 + 2]}
        assert conn.sock is first
    finally:
        conn.close()


def test_only_request_heads_count_against_the_head_limit(start: Callable[..., RestServer]) -> None:
    # Whole requests (head and a body larger than the head limit) arriving in one read, on one
    # keep-alive connection: the body bytes are not head bytes.
    rest = start(max_header_bytes=300)
    body = json.dumps({"instances": [1.0] * 150}).encode()
    message = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    with socket.create_connection(("127.0.0.1", rest.port), timeout=10) as sock:
        for _ in range(4):
            sock.sendall(message)
            reply = b""
            while not reply.endswith(b"]\n}"):
                reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 OK")
    reply = exchange(
        rest.port, f"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Pad: {'p' * 300}\r\n\r\n".encode()
    )
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_connections_beyond_the_limit_answer_503(start: Callable[..., RestServer]) -> None:
    rest = start(max_connections=3)
    held = [socket.create_connection(("127.0.0.1", rest.port), timeout=10) for _ in range(3)]
    try:
        time.sleep(0.1)
        status, _, body = split(
            exchange(rest.port, b"GET /v1/models/half_plus_two HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        assert status == "HTTP/1.1 503 Service Unavailable"
        assert json.loads(body) == {"error": "Too many open connections to the REST port; retry later"}
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    assert predict_ok(rest.port)


def test_oversized_head_is_431(rest: RestServer) -> None:
    # Whole (parsed, then measured) and still growing (counted as it arrives, never finished).
    reply = exchange(
        rest.port, b"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n"
    )
    status, _, body = split(reply)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert json.loads(body) == {"error": "Request line and headers exceed 65536 bytes"}
    with socket.create_connection(("127.0.0.1", rest.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Big: ")
        reply = b""
        for _ in range(20):
            time.sleep(0.01)
            try:
                sock.sendall(b"b" * 10000)
            except OSError:
                break  # refused and closed
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert predict_ok(rest.port)

"""/recommend reads at most max_body_bytes of a body: 413 from Content-Length or as the body arrives."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.recommender_client.test_service import running_ranker
from tests.recommender_client.test_service_limits import limited_app


@pytest.fixture()
def app(artifacts_dir: Path) -> Iterator[FastAPI]:
    with limited_app(artifacts_dir) as application:
        yield application


async def _call(
    app: FastAPI, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, list[int]]:
    """Send a body chunk by chunk straight to the ASGI app; returns the status and the chunks it pulled."""
    pulled: list[int] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if len(pulled) < len(chunks):
            pulled.append(len(chunks[len(pulled)]))
            return {
                "type": "http.request",
                "body": chunks[len(pulled) - 1],
                "more_body": len(pulled) < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/recommend",
        "raw_path": b"/recommend",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = sent[0]
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(sent[1]["body"]) == {"detail": "request body larger than 4096 bytes (max_body_bytes)"}
    return start["status"], pulled


def test_body_over_the_limit_is_413_before_reading_past_it(app: FastAPI) -> None:
    chunks = [b"x" * 1000] * 300  # 300 KB, 1000 bytes at a time
    status, pulled = asyncio.run(_call(app, [], chunks))
    assert status == 413 and pulled == [1000] * 5  # 5,000 > 4,096: the sixth chunk is never read
    declared = [(b"content-length", b"314572800")]  # 300 MiB announced: refused before any byte
    status, pulled = asyncio.run(_call(app, declared, chunks))
    assert status == 413 and pulled == []
    text = TestClient(app).get("/metrics").text
    assert 'ranker_requests_total{status="413"} 2.0' in text
    assert 'ranker_errors_total{kind="body_too_large"} 2.0' in text


def _resident_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _send_until_refused(base: str, head: str, piece: bytes, total: int) -> tuple[int, bytes]:
    """Stream up to ``total`` bytes of body after ``head``; returns what was sent and the first reply."""
    host, port = base.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what is still unsent is never read
        try:
            reply = sock.recv(65536)
        except ConnectionResetError:
            reply = b""
    return sent, reply


def test_a_real_server_refuses_a_300_mib_body_without_reading_it(artifacts_dir: Path) -> None:
    """Was: read whole, answered 200, resident memory 181 -> 738 MB. Now 413 after the first MiB or so."""
    total = 300 << 20
    piece = b"x" * (1 << 20)
    with running_ranker(artifacts_dir) as (base, proc):
        assert httpx.post(f"{base}/recommend", json={"user_id": "u1", "k": 2}, timeout=5).status_code == 200
        before, _ = _resident_mb(proc.pid)
        head = "POST /recommend HTTP/1.1\r\nHost: ranker\r\nContent-Type: application/json\r\n"
        declared = _send_until_refused(base, head + f"Content-Length: {total}\r\n\r\n", piece, total)
        chunked = _send_until_refused(
            base, head + "Transfer-Encoding: chunked\r\n\r\n", b"%x\r\n%s\r\n" % (len(piece), piece), total
        )
        _, peak = _resident_mb(proc.pid)
        assert httpx.post(f"{base}/recommend", json={"user_id": "u2", "k": 2}, timeout=5).status_code == 200
    for sent, reply in (declared, chunked):
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert reply.endswith(b'{"detail":"request body larger than 1048576 bytes (max_body_bytes)"}')
        assert sent < 64 << 20  # socket buffers' worth, never the 300 MiB
    assert peak - before < 32, (before, peak)

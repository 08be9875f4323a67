"""A real ``redis-server`` on a free loopback port for the tests (no persistence), polled until it answers."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.recommender_client.client.servers import free_port


@dataclass(frozen=True)
class RedisServer:
    """A running server: its URL and process (the tests stop and start nothing else)."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]


def _pings(port: int) -> bool:
    """Whether the server answers PING with +PONG (plain RESP over a socket: no client needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(workdir: Path, *, port: int | None = None) -> Iterator[RedisServer]:
    """``redis-server`` on 127.0.0.1 (``port``, or a free one) with no RDB or AOF, in ``workdir``;
    terminated at the end.

    Skips the test when the binary is absent (``make test`` installs Debian's redis-server).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs it: apt-get install redis-server)")
    port = port if port is not None else free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(workdir), "--protected-mode", "yes", "--zset-max-listpack-entries", "512"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _pings(port):
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode} before answering")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING on port {port} within 30 s")
            time.sleep(0.02)
        yield RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port, proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the session; tests keep apart by user ids or FLUSHDB."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server

"""A minimal threaded keep-alive HTTP/1.1 server: the transport under the REST face."""

# `http.server` parses headers through the email package and costs far more per request;
# this reads the request line and headers directly, supports Content-Length, chunked and gzip
# bodies, `Expect: 100-continue`, and refuses oversized bodies before reading them.

from __future__ import annotations

import socket
import socketserver
import threading
import zlib
from collections.abc import Callable, Sequence

from serving.model_server.json_text import error_body

JSON = "application/json"
MAX_HEADER_BYTES = 65536


class BodyTooLarge(Exception):
    pass


class _Connection(socketserver.StreamRequestHandler):
    """One keep-alive HTTP/1.1 connection: read requests, answer them in order."""

    server: HttpServer
    disable_nagle_algorithm = True
    timeout = 600  # seconds a keep-alive connection may sit idle (or stall mid-request)

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        while not self.server.stopping.is_set():
            try:
                if not self._one_request():
                    return
            except (ConnectionError, TimeoutError, OSError):
                return

    def _read_body(self, headers: dict[str, str]) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(MAX_HEADER_BYTES).strip():
                        pass
                    return b"".join(parts)
                total += size
                if total > limit:
                    raise BodyTooLarge(total)
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(headers.get("content-length", "0") or "0")
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            raise BodyTooLarge(length)
        return self.rfile.read(length) if length else b""

    def _one_request(self) -> bool:
        line = self.rfile.readline(MAX_HEADER_BYTES + 1)
        if not line:
            return False
        if not line.strip():
            return True  # stray CRLF between requests
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            self._send(400, "text/plain", b"Bad request line", close=True)
            return False
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            raw = self.rfile.readline(MAX_HEADER_BYTES + 1)
            size += len(raw)
            if size > MAX_HEADER_BYTES:
                self._send(431, "text/plain", b"Request header fields too large", close=True)
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            key, _, value = raw.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = self._read_body(headers)
        except BodyTooLarge as exc:
            message = (
                f"Request body of {exc.args[0]} bytes exceeds the limit of {self.server.max_body_bytes} bytes"
            )
            self._send(413, JSON, error_body(message), close=True)
            return False
        except ValueError:
            self._send(400, JSON, error_body("Malformed Content-Length or chunked body"), close=True)
            return False
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gunzip(body, self.server.max_body_bytes)
            except BodyTooLarge:
                message = f"Uncompressed request body exceeds the limit of {self.server.max_body_bytes} bytes"
                self._send(413, JSON, error_body(message), close=True)
                return False
            except (OSError, EOFError, zlib.error):
                self._send(
                    400, JSON, error_body("Failed to uncompress the gzip request body"), close=not keep_alive
                )
                return keep_alive
        status, content_type, payload = self.server.answer(method, target, body, headers)
        self._send(status, content_type, payload, close=not keep_alive)
        return keep_alive

    def _send(self, status: int, content_type: str, payload: bytes, *, close: bool) -> None:
        reason = _REASONS.get(status, "Error")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
        head += self.server.extra_headers
        if close:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + payload)


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing to grow it past `limit` bytes (no decompression bombs)."""
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    if not inflater.eof:
        raise EOFError("truncated gzip body")
    return out


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class HttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        answer: Callable[[str, str, bytes, dict[str, str]], tuple[int, str, bytes]],
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """``answer(method, target, body, headers)`` (header names lower-cased); every response
        carries ``extra_headers`` (the CORS headers when enabled)."""
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.answer = answer
        self.extra_headers = "".join(f"{key}: {value}\r\n" for key, value in extra_headers)
        self.max_body_bytes = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Connection)

    def close_connections(self) -> None:
        """Shut down open keep-alive connections so their threads end."""
        with self.lock:
            open_sockets = list(self.connections)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

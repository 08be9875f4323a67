"""The REST face's HTTP/1.1 server: uvicorn on its own event loop thread, bounded bodies."""

# Like TF Serving's evhttp server (one libevent loop buffers each request, a thread pool runs
# it, the answer goes back through the loop), one uvicorn loop (httptools, uvloop when
# installed) reads requests and writes answers; the handler runs in the caller's pool. The
# hand-written server this replaces kept a thread per connection for up to 600 s and read a
# chunk size of -1 to the end of the stream; see http_protocol.py for the connection limits.

from __future__ import annotations

import asyncio
import socket
import threading
import zlib
from collections.abc import Awaitable, Callable, Sequence

import uvicorn
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

from serving.model_server.http_protocol import HttpLimits, LimitedConfig, LimitedHttpToolsProtocol
from serving.model_server.json_text import error_body

JSON = "application/json"
Answer = Callable[[str, str, bytes, dict[str, str]], Awaitable[tuple[int, str, bytes]]]


class BodyTooLarge(Exception):
    pass


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing to grow it past `limit` bytes (no decompression bombs)."""
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    if not inflater.eof:
        raise EOFError("truncated gzip body")
    return out


class HttpServer:
    """HTTP/1.1 on ``address``: ``await answer(method, target, body, headers)`` per request.

    Args:
        address: (host, port); port 0 picks a free one.
        answer: gets the raw target (path and query, still percent-encoded), the whole body
            (gzip already inflated) and the headers (names lower-cased); returns
            (status, content type, payload). It runs on the loop, so it must not block.
        extra_headers: added to every answer (the CORS headers when enabled).
        max_body_bytes: larger bodies, by Content-Length or as chunks arrive (or inflated),
            answer 413 and the connection closes, as libevent's evhttp_set_max_body_size does.
        limits: connection, head size and timeout bounds (default: HttpLimits()).
    """

    def __init__(
        self,
        address: tuple[str, int],
        answer: Answer,
        *,
        extra_headers: Sequence[tuple[str, str]] = (),
        max_body_bytes: int = 256 * 1024 * 1024,
        limits: HttpLimits | None = None,
    ) -> None:
        self._answer = answer
        self._extra_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers]
        self.max_body_bytes = max_body_bytes
        self._socket = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(address)
            self._socket.listen(128)
        except OSError:
            self._socket.close()
            raise
        self.port: int = self._socket.getsockname()[1]  # uvloop may take over the socket object
        config = LimitedConfig(
            self._app,
            limits=limits or HttpLimits(),
            http=LimitedHttpToolsProtocol,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,  # evhttp sends no Server header; it does send Date
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, thread_init: Callable[[], None] | None = None) -> None:
        """Serve from a daemon thread; ``thread_init`` runs first in it (CPU pinning)."""

        def serve() -> None:
            if thread_init is not None:
                thread_init()
            with asyncio.Runner(loop_factory=self._server.config.get_loop_factory()) as runner:
                runner.run(self._serve())

        self._thread = threading.Thread(target=serve, name="rest-http", daemon=True)
        self._thread.start()

    async def _serve(self) -> None:
        await self._server.serve(sockets=[self._socket])
        for connection in list(self._server.server_state.connections):
            connection.transport.abort()  # still mid-request after the graceful second

    def stop(self) -> None:
        """Stop accepting, finish or drop open requests within a second, close every connection."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._socket.close()

    async def _app(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """One request: bounded body, the answer, then TF Serving's headers."""
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            body = await self._read_body(receive, int(headers.get("content-length", "0")))
        except BodyTooLarge as exc:
            message = f"Request body of {exc.args[0]} bytes exceeds the limit of {self.max_body_bytes} bytes"
            return await self._send(send, 413, JSON, error_body(message), close=True)
        except ConnectionError:
            return  # the client left; nobody to answer
        if "gzip" in headers.get("content-encoding", "").lower():
            try:
                body = gunzip(body, self.max_body_bytes)
            except BodyTooLarge:
                message = f"Uncompressed request body exceeds the limit of {self.max_body_bytes} bytes"
                return await self._send(send, 413, JSON, error_body(message), close=True)
            except (OSError, EOFError, zlib.error):
                message = "Failed to uncompress the gzip request body"
                return await self._send(send, 400, JSON, error_body(message))
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        status, content_type, payload = await self._answer(scope["method"], target, body, headers)
        await self._send(send, status, content_type, payload)

    async def _read_body(self, receive: ASGIReceiveCallable, length: int) -> bytes:
        """The whole body, refused once it is known to exceed the limit (before reading it
        when Content-Length says so; the parser has already checked that header's syntax)."""
        if length > self.max_body_bytes:
            raise BodyTooLarge(length)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ConnectionError("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(size)
            parts.append(chunk)
            if not message.get("more_body", False):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _send(
        self, send: ASGISendCallable, status: int, content_type: str, payload: bytes, *, close: bool = False
    ) -> None:
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", b"%d" % len(payload)),
        ]
        headers += self._extra_headers
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

"""uvicorn's httptools protocol plus the connection limits uvicorn leaves open."""

# uvicorn parses with llhttp (strict chunk sizes and Content-Length, no smuggling), buffers a
# request on one event loop and answers idle keep-alive connections with a timeout, but only
# after a response: a connection that never sends a byte, or stalls inside a request, stays
# open for ever; a request head may grow without bound; a client that stops reading keeps its
# response in memory. libevent (under TF Serving's evhttp server) closes a connection that
# reads or writes nothing for 50 s (HTTP_READ_TIMEOUT / HTTP_WRITE_TIMEOUT) and answers a
# malformed request 400; this adds the same kind of bounds, with TF Serving's JSON error body.

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import httptools
import uvicorn
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from serving.model_server.json_text import error_body


@dataclass(frozen=True)
class HttpLimits:
    """What one client can hold on the REST port.

    Args:
        max_connections: open connections; a request on a connection beyond it answers 503 and
            the connection closes. Each costs a file descriptor and a few KB, never a thread.
        max_header_bytes: request line plus headers; more answers 431 (the old transport's limit).
        keep_alive_timeout_s: a connection idle this long (before its first request, between
            requests, or with its answer still unread) is closed: libevent's 50 s.
        request_timeout_s: a request whose head and body have not all arrived this long after
            its first byte is dropped, as libevent drops a read timeout (no answer).
    """

    max_connections: int = 1024
    max_header_bytes: int = 65536
    keep_alive_timeout_s: float = 50.0
    request_timeout_s: float = 60.0


class LimitedConfig(uvicorn.Config):
    """uvicorn's Config carrying the HttpLimits to every connection's protocol."""

    def __init__(self, app: Any, *, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, timeout_keep_alive=limits.keep_alive_timeout_s, **kwargs)  # type: ignore[arg-type]
        self.limits = limits


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


async def _too_many_connections(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """The answer on a connection beyond ``max_connections``."""
    body = error_body("Too many open connections to the REST port; retry later")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": 503, "headers": [*headers, (b"connection", b"close")]}
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One connection: uvicorn's parsing and ASGI cycle, bounded by the config's HttpLimits."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = cast(LimitedConfig, config).limits
        self._in_head = True  # waiting for, or reading, a request line and headers
        self._head_bytes = 0
        self._heads = 0  # heads parsed on this connection
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app = _too_many_connections
        # uvicorn arms its keep-alive timer only after a response: arm it for the first request.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser (as uvicorn does), answering its errors and oversized heads in JSON."""
        self._unset_keepalive_if_required()
        was_in_head, heads = self._in_head, self._heads
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return  # no upgrades (TF Serving has none): the request was answered as plain HTTP
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_large_head()
            else:
                self._refuse(400, f"Malformed HTTP request: {exc}")
            return
        if was_in_head and self._in_head and heads == self._heads:  # all of `data` is one head
            self._head_bytes += len(data)  # (a head still growing: the parser buffers it)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse_large_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._stop_request_timer()
        self._request_timer = self.loop.call_later(self.limits.request_timeout_s, self.transport.close)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        if len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) > self.limits.max_header_bytes:
            raise _HeadTooLarge  # feed_data raises HttpParserCallbackError from it
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_request_timer()
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():  # closing waits for the answer to drain: not for ever
            self.loop.call_later(self.timeout_keep_alive, self.transport.abort)

    def timeout_keep_alive_handler(self) -> None:
        """Idle for the timeout: close, dropping an answer the client never read."""
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            super().timeout_keep_alive_handler()

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _refuse_large_head(self) -> None:
        self._refuse(431, f"Request line and headers exceed {self.limits.max_header_bytes} bytes")

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request the parser refused, then close (uvicorn's own answer is plain text)."""
        body = error_body(message)
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        self.transport.write(b"".join(head) + b"connection: close\r\n\r\n" + body)
        self.transport.close()

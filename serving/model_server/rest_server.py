"""TF Serving's REST API on a socket: worker pool, request timeout, bounded queue."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

from serving.model_server.http_protocol import HttpLimits
from serving.model_server.http_transport import JSON, HttpServer
from serving.model_server.json_text import error_body
from serving.model_server.metrics import Metrics
from serving.model_server.rest import RestApi

# http_rest_api_util.cc, AddCORSHeaders.
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)


def cors_preflight(origin: str) -> tuple[int, str, bytes]:
    """An OPTIONS request, as http_server.cc answers it whether or not CORS is enabled.

    200 when the Origin header holds an http(s) URL, else FAILED_PRECONDITION ("Origin header
    is missing in CORS preflight", logged there; the body stays empty as TF Serving's does).
    """
    if re.search(r"https?://", origin):
        return 200, JSON, b""
    return 400, JSON, b""


class RestServer:
    """TF Serving's REST API on `bind_address:port`, served from a background thread.

    Args:
        manager: the ModelManager.
        bind_address: interface to bind ("0.0.0.0", "127.0.0.1", "::").
        port: TCP port; 0 picks a free one (see `.port` after `start`).
        metrics: request metrics, also served at `prometheus_path`.
        prometheus_path: metrics page path; None disables it (TF Serving's default).
        timeout_ms: `--rest_api_timeout_in_ms`; a request still running after it answers
            504 (DEADLINE_EXCEEDED). 0 or less waits forever.
        max_body_bytes: larger request bodies answer 413 (by Content-Length before reading,
            chunked ones as soon as they pass it).
        num_threads: `--rest_api_num_threads`, requests processed at once: with the one HTTP
            loop thread, every thread the REST face has, whatever the number of connections.
        max_queued: requests waiting for a worker beyond which new ones answer 503 at once
            (default 4 per worker): a burst can never queue unbounded work behind the timeout.
        enable_cors: ``--rest_api_enable_cors_support``: every response carries TF Serving's
            CORS headers (http_rest_api_util.cc, AddCORSHeaders).
        limits: open connections, head size and the idle and slow-request timeouts
            (default: HttpLimits()).
    """

    def __init__(
        self,
        manager: Any,
        *,
        bind_address: str,
        port: int,
        metrics: Metrics | None = None,
        prometheus_path: str | None = None,
        timeout_ms: int = 30000,
        max_body_bytes: int = 256 * 1024 * 1024,
        num_threads: int = 64,
        thread_init: Callable[[], None] | None = None,
        max_queued: int | None = None,
        enable_cors: bool = False,
        limits: HttpLimits | None = None,
    ) -> None:
        """``thread_init`` runs first in the HTTP loop thread and every worker thread."""
        self.api = RestApi(manager, metrics=metrics, prometheus_path=prometheus_path)
        self._thread_init = thread_init
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self.max_pending = max(1, num_threads) + (
            4 * max(1, num_threads) if max_queued is None else max_queued
        )
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._pool = futures.ThreadPoolExecutor(
            max_workers=max(1, num_threads), thread_name_prefix="rest-worker", initializer=thread_init
        )
        try:
            self._http = HttpServer(
                (bind_address, port),
                self._answer,
                extra_headers=CORS_HEADERS if enable_cors else (),
                max_body_bytes=max_body_bytes,
                limits=limits,
            )
        except OSError as exc:
            self._pool.shutdown(wait=False)
            raise RuntimeError(f"could not bind REST server to {bind_address}:{port}: {exc}") from None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._http.port

    async def _answer(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        """Run the request in the pool; the HTTP loop waits without holding a thread."""
        if method == "OPTIONS":
            return cors_preflight(headers.get("origin", ""))
        with self._pending_lock:
            if self._pending >= self.max_pending:
                return 503, JSON, error_body("The REST request queue is full; retry later")
            self._pending += 1
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        try:
            future = self._pool.submit(self.api.handle, method, target, body, deadline)
        except BaseException:
            self._release()
            raise
        # One future settled from the worker or by the timer: asyncio.wait_for over wrap_future
        # costs two more loop turns per request (measured 10-15 us of the REST face's latency).
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[int, str, bytes]] = loop.create_future()
        future.add_done_callback(lambda done: self._finished(loop, answer, done))
        timer = None if self.timeout_s is None else loop.call_later(self.timeout_s, _expire, answer, future)
        try:
            return await answer
        finally:
            if timer is not None:
                timer.cancel()
            future.cancel()  # the client left or the server stops: a queued request never runs

    def _finished(
        self,
        loop: asyncio.AbstractEventLoop,
        answer: asyncio.Future[tuple[int, str, bytes]],
        done: futures.Future[tuple[int, str, bytes]],
    ) -> None:
        """In the worker (or the cancelling) thread: free the queue slot, hand the answer over."""
        self._release()
        if not done.cancelled():
            try:
                loop.call_soon_threadsafe(_settle, answer, done)
            except RuntimeError:
                pass  # the loop has closed: the server stopped

    def _release(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def start(self) -> int:
        """Start serving in a daemon thread; returns the bound port."""
        self._http.start(self._thread_init)
        return self.port

    def stop(self) -> None:
        """Stop accepting, close the connections and release the worker threads."""
        self._http.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _settle(
    answer: asyncio.Future[tuple[int, str, bytes]], done: futures.Future[tuple[int, str, bytes]]
) -> None:
    if not answer.done():
        exc = done.exception()
        if exc is None:
            answer.set_result(done.result())
        else:
            answer.set_exception(exc)


def _expire(
    answer: asyncio.Future[tuple[int, str, bytes]], future: futures.Future[tuple[int, str, bytes]]
) -> None:
    """--rest_api_timeout_in_ms passed: 504; still queued, the request never runs; running, its
    Session run has the deadline."""
    if not answer.done():
        future.cancel()
        answer.set_result((504, JSON, error_body("Deadline Exceeded")))

"""Which server serves gRPC: the inline one when it answers its start-up self-test, else grpc.server.

Why a self-test: the inline server (grpc_inline.py) is built on grpc's Cython layer, which
is not public API; a grpc release that changes it could leave calls unanswered rather than
fail loudly. So after start the face makes one real call to itself over loopback, with a
short deadline; with ``face="auto"`` an inline server that does not answer it correctly is
stopped and grpc.server serves on the same addresses (with a warning), with
``face="inline"`` start-up fails. grpc.server is grpc's public API and is not tested.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from serving.model_server import grpc_inline

log = logging.getLogger(__name__)

FACES = ("auto", "inline", "stock")
SELF_TEST_METHOD = "/serving.model_server.SelfTest/Echo"
_DISCARD_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class Recipe:
    """How to build, fill and bind a server of either face (a fallback builds a second one).

    ``register(server, inline)`` adds every service; ``tcp_host`` is the host part of the
    TCP address ("" for no TCP listener); ``socket_path`` a Unix socket path ("" for none).
    """

    options: tuple[tuple[str, Any], ...]
    max_workers: int
    thread_init: Callable[[], None] | None
    quick_methods: tuple[str, ...]
    register: Callable[[Any, bool], None]
    tcp_host: str
    socket_path: str


class _SelfTest(grpc.GenericRpcHandler):
    """The self-test method: echoes the face's nonce reversed. Any other payload is answered
    as an unknown method is, so to clients the method does not exist."""

    def __init__(self, nonce: bytes) -> None:
        self._nonce = nonce
        self._handler = grpc.unary_unary_rpc_method_handler(self._echo)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handler if handler_call_details.method == SELF_TEST_METHOD else None

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if request != self._nonce:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        return request[::-1]


def self_test(target: str, nonce: bytes, timeout: float) -> str | None:
    """The self-test's two calls to ``target``: the nonce (an answer with a message) and
    anything else (an answer with an error status, a different path through grpc's core).
    None when both are answered correctly within ``timeout``, else what went wrong. The
    channel ignores proxies (``http_proxy`` would otherwise apply to loopback)."""
    options = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target, options=options) as channel:
        echo = channel.unary_unary(SELF_TEST_METHOD)
        try:
            answer = echo(nonce, timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        if answer != nonce[::-1]:
            return f"a wrong answer ({answer!r})"
        try:
            echo(b"", timeout=max(deadline - time.monotonic(), 0.001))
        except grpc.RpcError as exc:
            status = (exc.code(), exc.details())
            if status == (grpc.StatusCode.UNIMPLEMENTED, "Method not found!"):
                return None
            return f"{status[0].name}: {status[1]} where UNIMPLEMENTED was due"
    return "an answer where UNIMPLEMENTED was due"


def loopback_host(bind_address: str) -> str:
    """The host a call to a server bound to ``bind_address`` reaches it on."""
    if bind_address in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind_address in ("::", "[::]"):
        return "[::1]"
    return f"[{bind_address}]" if ":" in bind_address and not bind_address.startswith("[") else bind_address


def remove_stale_socket(path: str) -> None:
    """Delete a Unix socket left at ``path`` by an earlier server (TF Serving's test harness
    reuses one path); anything else there is left, and binding then fails with its name."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _bind(server: Any, address: str) -> int:
    """Bind ``address``; the bound port (1 for a Unix socket). grpc.server raises where the
    inline server returns 0: both become one RuntimeError naming the address."""
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError as exc:
        raise RuntimeError(f"could not bind gRPC server to {address}: {exc}") from None
    if bound == 0:
        raise RuntimeError(f"could not bind gRPC server to {address}")
    return bound


class GrpcFace:
    """grpc.Server's lifecycle (start, stop, wait_for_termination) over whichever server serves.

    ``face`` is "inline" or "stock": the server built now, and after start() the one
    serving. ``port`` is the bound TCP port (0 without a TCP listener); a fallback binds
    the same one.

    Raises:
        ValueError: an unknown face, or nothing to listen on.
        RuntimeError: ``face="inline"`` where grpc lacks its core API; an address that
            could not be bound.
    """

    def __init__(
        self, recipe: Recipe, *, port: int, face: str = "auto", self_test_timeout: float = 2.0
    ) -> None:
        if face not in FACES:
            raise ValueError(f"gRPC face {face!r} is not one of {', '.join(FACES)}")
        if not recipe.tcp_host and not recipe.socket_path:
            raise ValueError("the gRPC server needs a TCP port or a Unix socket path to listen on")
        self._recipe = recipe
        self._required = face == "inline"
        self._timeout = self_test_timeout
        self._nonce = secrets.token_bytes(16)
        inline = face != "stock" and grpc_inline.available()
        if self._required and not inline:
            raise RuntimeError(
                f"grpc {grpc.__version__} lacks the core API the inline gRPC server uses; "
                "--grpc_face=stock or auto serves with grpc.server"
            )
        if face == "auto" and not inline:
            log.warning(
                "grpc %s lacks the core API the inline server uses; using grpc.server", grpc.__version__
            )
        self.face = "inline" if inline else "stock"
        self.port = port
        self._server: Any = None
        self._server = self._build(inline)

    def _build(self, inline: bool) -> Any:
        """A filled and bound server of one face (stopped again if binding fails)."""
        recipe = self._recipe
        if inline:
            server: Any = grpc_inline.InlineGrpcServer(
                recipe.options,
                recipe.max_workers,
                quick_methods=recipe.quick_methods,
                thread_init=recipe.thread_init,
            )
        else:
            pool = futures.ThreadPoolExecutor(
                max_workers=recipe.max_workers,
                thread_name_prefix="grpc-handler",
                initializer=recipe.thread_init,
            )
            server = grpc.server(pool, options=recipe.options)
        try:
            recipe.register(server, inline)
            if inline:
                server.add_generic_rpc_handlers((_SelfTest(self._nonce),))
            if recipe.tcp_host:
                self.port = _bind(server, f"{recipe.tcp_host}:{self.port}")
            if recipe.socket_path:
                remove_stale_socket(recipe.socket_path)
                _bind(server, f"unix:{recipe.socket_path}")
        except BaseException:
            server.stop(None)
            raise
        return server

    def _self_test_target(self) -> str:
        if self._recipe.tcp_host:
            return f"{loopback_host(self._recipe.tcp_host)}:{self.port}"
        return f"unix:{self._recipe.socket_path}"

    def start(self) -> None:
        """Start serving; an inline server first answers its self-test (see the module doc).

        Raises:
            RuntimeError: ``face="inline"`` and the self-test failed; or, falling back, the
                addresses could not be bound again.
        """
        self._server.start()
        if self.face != "inline":
            return
        problem = self_test(self._self_test_target(), self._nonce, self._timeout)
        if problem is None:
            return
        message = (
            f"the inline gRPC server failed its start-up self-test (grpc {grpc.__version__}, "
            f"{self._timeout:g} s deadline): {problem}"
        )
        self._discard()
        if self._required:
            raise RuntimeError(f"{message}; --grpc_face=stock or auto serves with grpc.server")
        log.warning("%s; serving with grpc.server instead", message)
        self._server = self._build(False)
        self.face = "stock"
        self._server.start()

    def _discard(self) -> None:
        """Stop the failed inline server. Its listeners close at once; a call it never answered
        may keep its threads, which are left (daemons) rather than waited for."""
        server, self._server = self._server, None
        if not server.stop(None).wait(_DISCARD_WAIT_SECONDS):
            log.warning(
                "the inline gRPC server did not stop in %g s; its threads are left", _DISCARD_WAIT_SECONDS
            )

    def stop(self, grace: float | None) -> threading.Event:
        """grpc.Server.stop: the returned event is set once the server has stopped."""
        if self._server is None:  # a start that failed has already stopped everything
            done = threading.Event()
            done.set()
            return done
        return self._server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until stopped; True when ``timeout`` passed first (grpc.Server's meaning)."""
        if self._server is None:
            return False
        return bool(self._server.wait_for_termination(timeout))

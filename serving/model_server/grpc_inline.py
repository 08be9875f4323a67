"""A unary gRPC server that runs each handler in the thread that polled its message.

Why: grpc's sync server (grpc.server) polls every event in one thread, hands each new call to
a pool thread, and then hands that thread its request message through a condition variable:
two thread hops per call before the handler starts, and each hop that lands on a halted
vCPU costs a wake-up. TF Serving's C++ server has no such hops. Here at most two threads
poll one completion queue of grpc's core; whichever receives a call's message runs the
handler there and starts the reply. Measured on the CTR model (benchmarks/bench_model_server.py,
same run): a 500-row Predict 1.48-1.49x the in-process call against 1.56x on grpc.server, and
without batching 2,390-2,420 req/s against 1,500 (32 clients x 16 rows).

It serves unary-unary methods only (all of TF Serving's API) and reads the handlers the
generated ``add_*Servicer_to_server`` functions register. It is built on grpc's Cython layer
(``grpc._cython.cygrpc``), the layer grpc.server and grpc.aio are themselves written on;
that layer is not public API, so ``available()`` checks for what it uses, the gRPC face
(grpc_face.py) checks with a start-up self-test call that it answers, and either failing
means grpc.server serves instead.

The parts: grpc_inline_context.py (what a handler sees: InlineContext, Reply),
grpc_inline_calls.py (one call's protocol on the core), grpc_inline_server.py (the server's
lifecycle and polling threads). This module is where the rest of the code imports them from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from serving.model_server.grpc_inline_calls import load_cygrpc
from serving.model_server.grpc_inline_context import InlineContext, Reply
from serving.model_server.grpc_inline_server import InlineGrpcServer

__all__ = ["InlineContext", "InlineGrpcServer", "Reply", "available", "inline_server"]

log = logging.getLogger(__name__)

_REQUIRED = (
    "CompletionQueue",
    "Server",
    "ReceiveMessageOperation",
    "SendInitialMetadataOperation",
    "SendMessageOperation",
    "SendStatusFromServerOperation",
    "ReceiveCloseOnServerOperation",
    "CompletionType",
    "StatusCode",
)


def available() -> bool:
    """Whether the installed grpc has the core-level pieces this server uses."""
    try:
        cygrpc = load_cygrpc()
    except ImportError:
        return False
    return all(hasattr(cygrpc, name) for name in _REQUIRED)


def inline_server(
    options: Sequence[tuple[str, Any]],
    threads: int,
    fallback: Callable[[], Any],
    quick_methods: Iterable[str] = (),
    thread_init: Callable[[], None] | None = None,
) -> InlineGrpcServer | Any:
    """An InlineGrpcServer where grpc has what it needs, else ``fallback()`` (grpc.server)."""
    if available():
        return InlineGrpcServer(options, threads, quick_methods=quick_methods, thread_init=thread_init)
    log.warning("grpc %s lacks the core API the inline server uses; using grpc.server", grpc.__version__)
    return fallback()

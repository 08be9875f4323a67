"""One unary call on grpc's core: find its method, read its message, run the handler, answer once.

Every path ends in an answer, or a cancellation when even the answer cannot be started: a
call left without one would hang its client until the deadline, and an exception from grpc's
private API (the Cython layer changes between releases) must not be able to do that.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from serving.model_server.grpc_inline_context import NO_RESPONSE, Abort, InlineContext, Received

log = logging.getLogger(__name__)

_FINISHED = "finished"  # tag of a call's answer batch; nothing is left to do when it completes
SERVER_ERROR = "Internal error in the gRPC server"


def load_cygrpc() -> Any:
    """grpc's Cython layer (imported on first use: nothing happens at import)."""
    from grpc._cython import cygrpc

    return cygrpc


class _HandlerCallDetails(grpc.HandlerCallDetails):
    """What a generic handler looks methods up by."""

    def __init__(self, method: str, invocation_metadata: Any) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


class Calls:
    """The handlers a server registered and the protocol of one unary call over them.

    ``replied`` is called once per call whose message arrived, when its answer has started
    or it will never get one (the server counts pending calls to know when its queue may
    close). ``quick_methods`` are marked on their calls' tags (see InlineGrpcServer).
    """

    def __init__(self, cygrpc: Any, quick_methods: Iterable[str], replied: Callable[[], None]) -> None:
        self._cygrpc = cygrpc
        self._quick = frozenset(quick_methods)
        self._on_replied = replied
        self._generic: list[grpc.GenericRpcHandler] = []
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}
        self.answer_lock = threading.Lock()

    def add_generic(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        for method, handler in handlers.items():
            self._handlers[f"/{service}/{method}"] = handler

    def accept(self, event: Any) -> None:
        """A new call: look its method up and ask for its message (whose event runs respond)."""
        if not event.success:
            return  # the server is shutting down
        call = event.call
        try:
            details = event.call_details
            method = details.method.decode() if isinstance(details.method, bytes) else details.method
            try:
                handler = self._lookup(method, event.invocation_metadata)
            except Exception:  # grpc.server answers a failing generic handler the same way
                log.exception("Exception servicing handler for %s", method)
                self.finish(call, None, grpc.StatusCode.UNKNOWN, "Error in service handler!")
                return
            if handler is None or handler.request_streaming or handler.response_streaming:
                self.finish(call, None, grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
                return
            received = Received(
                call, method, details.deadline, event.invocation_metadata, handler, method in self._quick
            )
            call.start_server_batch((self._cygrpc.ReceiveMessageOperation(0),), received)
        except Exception:
            log.exception("gRPC inline server: accepting a call failed (grpc %s)", grpc.__version__)
            self._abandon(call)

    def _lookup(self, method: str, metadata: Any) -> grpc.RpcMethodHandler | None:
        if method in self._handlers:
            return self._handlers[method]
        found = None
        call_details = _HandlerCallDetails(method, metadata)
        for generic in self._generic:
            found = generic.service(call_details)
            if found is not None:
                break
        if len(self._handlers) < 1024:  # a client can name any method: bound the cache
            self._handlers[method] = found
        return found

    def respond(self, received: Received, event: Any) -> None:
        """The message is in (or the call was cancelled): run the handler in this thread.

        Every path answers through ``context.answer`` (here, or later through the Reply the
        handler deferred to), which also ends the call's pending count exactly once; an
        exception outside the handler (grpc's API) answers INTERNAL.
        """
        context = InlineContext(self, received)
        try:
            self._run(context, received, event)
        except Exception:
            log.exception(
                "gRPC inline server: handling %s failed (grpc %s)", received.method, grpc.__version__
            )
            context.answer(grpc.StatusCode.INTERNAL, SERVER_ERROR)

    def _run(self, context: InlineContext, received: Received, event: Any) -> None:
        if not event.success:  # cancelled before the message arrived: nothing to answer
            context.drop()
            return
        data = event.batch_operations[0].message()
        handler = received.handler
        if data is None:
            context.answer(
                grpc.StatusCode.UNIMPLEMENTED, f'"{received.method}" requires exactly one request message.'
            )
            return
        try:
            request = handler.request_deserializer(data) if handler.request_deserializer else data
        except Exception:
            log.exception("Exception deserializing request for %s", received.method)
            context.answer(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
            return
        try:
            response = handler.unary_unary(request, context)
        except Abort as abort:
            context.answer(abort.code, abort.details)
            return
        except Exception as exc:
            traceback.print_exc()
            context.answer(grpc.StatusCode.UNKNOWN, f"Exception calling application: {exc}")
            return
        if context.deferred:
            return  # deferred: the Reply answers
        if context.code != grpc.StatusCode.OK:
            context.answer(context.code, context.details)
        else:
            context.answer(grpc.StatusCode.OK, "", response)

    def reply(self, received: Received, code: grpc.StatusCode, details: str, response: Any) -> None:
        """Start the answer batch: ``response`` serialized (with OK) or the status alone."""
        try:
            if response is NO_RESPONSE:
                self.finish(received.call, None, code, details)
                return
            serialize = received.handler.response_serializer
            try:
                payload = serialize(response) if serialize else response
            except Exception:
                log.exception("Exception serializing response for %s", received.method)
                self.finish(received.call, None, grpc.StatusCode.INTERNAL, "Failed to serialize response!")
                return
            self.finish(received.call, payload, grpc.StatusCode.OK, "")
        except Exception:
            log.exception(
                "gRPC inline server: answering %s failed (grpc %s)", received.method, grpc.__version__
            )
            self._cancel(received.call)

    def replied(self) -> None:
        self._on_replied()

    def finish(self, call: Any, payload: bytes | None, code: grpc.StatusCode, details: str) -> None:
        """One batch: initial metadata, the message (if any), the status, and the close."""
        cygrpc = self._cygrpc
        status = code.value[0]  # the number: cygrpc.StatusCode is an enum in some releases, not in others
        operations: list[Any] = [cygrpc.SendInitialMetadataOperation(None, 0)]
        if payload is not None:
            operations.append(cygrpc.SendMessageOperation(payload, 0))
        operations.append(cygrpc.SendStatusFromServerOperation(None, status, details.encode(), 0))
        operations.append(cygrpc.ReceiveCloseOnServerOperation(0))
        call.start_server_batch(operations, _FINISHED)

    def _abandon(self, call: Any) -> None:
        """Answer INTERNAL a call that failed before its handler ran; cancel it if even that fails."""
        try:
            self.finish(call, None, grpc.StatusCode.INTERNAL, SERVER_ERROR)
        except Exception:
            log.exception("gRPC inline server: answering a failed call failed")
            self._cancel(call)

    def _cancel(self, call: Any) -> None:
        """The last resort for a call that cannot be answered: cancel it, so its client hears
        INTERNAL now instead of waiting for its deadline."""
        try:
            call.cancel(grpc.StatusCode.INTERNAL.value[0], SERVER_ERROR)
        except Exception:
            log.exception("gRPC inline server: cancelling a call failed; its client waits for its deadline")

"""What an inline handler sees of its call: the context, the deferred Reply, the call's tag."""

from __future__ import annotations

import time
from typing import Any, Protocol

import grpc

NO_RESPONSE: Any = object()  # InlineContext.answer without a message


class Abort(Exception):
    """Raised by context.abort: ends the handler, and the call is answered with the status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Received:
    """Tag of a call's ReceiveMessage batch: what the handler needs once the message is in."""

    __slots__ = ("call", "method", "deadline", "metadata", "handler", "quick")

    def __init__(
        self, call: Any, method: str, deadline: float, metadata: Any, handler: Any, quick: bool
    ) -> None:
        self.call = call
        self.method = method
        self.deadline = deadline
        self.metadata = metadata
        self.handler = handler
        self.quick = quick


class Answerer(Protocol):
    """The part of the call protocol (grpc_inline_calls.Calls) a context answers through."""

    answer_lock: Any

    def reply(self, received: Received, code: grpc.StatusCode, details: str, response: Any) -> None:
        """Start the call's one answer batch (or cancel the call when that fails)."""

    def replied(self) -> None:
        """The call is answered (or never will be): one fewer pending."""


class InlineContext:
    """The part of grpc.ServicerContext that unary handlers use, plus ``defer()``.

    abort() raises like grpc's does; set_code/set_details without abort give the status a
    normally returned response is sent with (grpc's sync server does the same).
    """

    __slots__ = ("_calls", "_received", "code", "details", "deferred", "_answered")

    def __init__(self, calls: Answerer, received: Received) -> None:
        self._calls = calls
        self._received = received
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.deferred = False
        self._answered = False

    def defer(self) -> Reply:
        """Answer later: the handler's return value is ignored, and the call is answered
        when the returned Reply's send() or abort() is called, from any thread. Why: a
        request waiting for its batch then holds no thread (the batch's thread answers it).

        The context keeps only a flag, not the Reply: a context <-> Reply reference cycle
        would leave every call's objects (grpc's call among them) to the cyclic garbage
        collector, whose collections then ran 4.5 ms with the GIL held every ~150 ms."""
        self.deferred = True
        return Reply(self)

    def answer(self, code: grpc.StatusCode, details: str, response: Any = NO_RESPONSE) -> None:
        """Send the call's one answer: ``response`` (with OK) or the status alone. Only the
        first answer counts, from whichever thread; it also ends the call's pending count."""
        if self._claim():
            try:
                self._calls.reply(self._received, code, details, response)
            finally:
                self._calls.replied()

    def drop(self) -> None:
        """End the call's pending count without an answer (the client cancelled it)."""
        if self._claim():
            self._calls.replied()

    def _claim(self) -> bool:
        """True for the first caller: the one that answers."""
        with self._calls.answer_lock:
            if self._answered:
                return False
            self._answered = True
            return True

    def time_remaining(self) -> float:
        """Seconds before the client's deadline, as grpc's context gives them (a call without
        a deadline has one in the far future)."""
        return max(self._received.deadline - time.time(), 0.0)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status code other than OK")
        raise Abort(code, details)

    def abort_with_status(self, status: grpc.Status) -> None:
        raise Abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def invocation_metadata(self) -> Any:
        return self._received.metadata

    def peer(self) -> str:
        return self._received.call.peer().decode()

    def is_active(self) -> bool:
        return True


class Reply:
    """Completes a call whose handler returned before its result existed (``context.defer()``).

    Either method may be called from any thread, once; later calls are ignored (so a handler
    that fails after deferring still answers exactly once).
    """

    __slots__ = ("_context",)

    def __init__(self, context: InlineContext) -> None:
        self._context = context

    def send(self, response: Any) -> None:
        self._context.answer(grpc.StatusCode.OK, "", response)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.answer(code, details)

"""TF Serving's gRPC API: PredictionService and ModelService on the official protos."""

# The request -> response logic lives in handlers.py (shared with the REST face); this module
# is the gRPC transport: servicer methods, status mapping, deadlines, metrics, the servers.

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.model_server.errors import ServingError
from serving.model_server.grpc_face import GrpcFace, Recipe
from serving.model_server.handlers import (
    handle_classify,
    handle_metadata,
    handle_multi_inference,
    handle_predict,
    handle_regress,
    handle_reload,
    handle_status,
    predict_inputs,
    predict_response,
)
from serving.model_server.metrics import Metrics

_ERROR_MESSAGE_LIMIT = 1024  # grpc_status_util.cc truncates longer messages.


def grpc_message(message: str) -> str:
    """TF Serving's ToGRPCStatus: messages over 1024 characters are truncated."""
    if len(message) > _ERROR_MESSAGE_LIMIT:
        return message[:_ERROR_MESSAGE_LIMIT] + "...TRUNCATED"
    return message


_COUNTED_APIS = ("Predict", "Classify", "Regress", "MultiInference")


def _check_deadline(context: Any) -> float | None:
    """The call's deadline as a ``time.monotonic()`` value (None without one).

    A call whose deadline already passed is answered DEADLINE_EXCEEDED without running; the
    others pass the deadline into the run, as TF Serving passes it into RunOptions.
    """
    remaining = context.time_remaining()
    if remaining is None:
        return None
    if remaining <= 0:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    return time.monotonic() + remaining


# The APIs whose handlers run the model and take the call's deadline.
_TIMED_APIS = ("Predict", "Classify", "Regress")


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status a failed call answers: a ServingError's own, else INTERNAL (a bug must still
    answer with a status, not kill the call)."""
    if isinstance(exc, ServingError):
        return exc.code, grpc_message(exc.message)
    return grpc.StatusCode.INTERNAL, grpc_message(f"{type(exc).__name__}: {exc}")


def _record(metrics: Metrics | None, model_name: str, api: str, code: grpc.StatusCode, start: float) -> None:
    """One request into the metrics (when there are any), timed from ``start``."""
    if metrics is not None:
        metrics.record_request(model_name, api, "GRPC", code, (time.perf_counter() - start) * 1e6)


def _call(
    api: str,
    handler: Callable[[Any, Any], Any],
    manager: Any,
    metrics: Metrics | None,
    model_name: Callable[[Any], str],
) -> Callable[[Any, Any], Any]:
    """A servicer method: ServingError -> context.abort(code, message); metrics per request."""
    counted = metrics is not None and api in _COUNTED_APIS
    timed = api in _TIMED_APIS

    def method(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            deadline = _check_deadline(context)
            if timed:
                return handler(manager, request, deadline)
            return handler(manager, request)
        except Exception as exc:
            code, message = _status_of(exc)
            context.abort(code, message)
        finally:
            if counted:
                _record(metrics, model_name(request), api, code, start)

    method.__name__ = api
    return method


def _deferred_predict(manager: Any, metrics: Metrics | None) -> Callable[[Any, Any], Any]:
    """Predict for the InlineGrpcServer with a batcher: a queued request holds no thread.

    The handler checks the request and enqueues it with a deliver callback, then returns;
    the thread that processes the batch (a batch thread, or the handler whose request filled
    it) builds and sends each response (``context.defer()``). A request the batcher does not
    take (no inputs or no rows) runs in the handler's thread; one with more rows than
    ``max_batch_size`` is refused by the batcher, as TF Serving refuses it. The call's
    deadline goes with the task.
    """

    def Predict(request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        start = time.perf_counter()
        reply = context.defer()

        def deliver(outputs: dict[str, Any] | None, error: BaseException | None) -> None:
            """The call's one answer and its metrics: the response, or ``error``'s status."""
            code = grpc.StatusCode.OK
            try:
                if error is not None:
                    raise error
                reply.send(predict_response(request, servable, signature_name, outputs or {}))
            except Exception as exc:
                code, message = _status_of(exc)
                reply.abort(code, message)
            _record(metrics, request.model_spec.name, "Predict", code, start)

        try:
            deadline = _check_deadline(context)
            servable, signature_name, inputs = predict_inputs(manager, request)
            output_filter = tuple(request.output_filter)
            if not manager.runner.enqueue(
                servable, signature_name, inputs, output_filter, deliver, deadline=deadline
            ):
                deliver(servable.run(signature_name, inputs, output_filter, deadline=deadline), None)
        except Exception as exc:
            deliver(None, exc)
        return None

    return Predict


def _spec_name(request: Any) -> str:
    return request.model_spec.name


def _tasks_name(request: Any) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over a ModelManager.

    ``deferred`` (only for the InlineGrpcServer, with a batcher): Predict queues its request
    and the batch's thread answers it (see _deferred_predict).
    """

    def __init__(self, manager: Any, metrics: Metrics | None = None, deferred: bool = False) -> None:
        if deferred:
            self.Predict = _deferred_predict(manager, metrics)
        else:
            self.Predict = _call("Predict", handle_predict, manager, metrics, _spec_name)
        self.Classify = _call("Classify", handle_classify, manager, metrics, _spec_name)
        self.Regress = _call("Regress", handle_regress, manager, metrics, _spec_name)
        self.MultiInference = _call("MultiInference", handle_multi_inference, manager, metrics, _tasks_name)
        self.GetModelMetadata = _call("GetModelMetadata", handle_metadata, manager, metrics, _spec_name)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService over a ModelManager."""

    def __init__(self, manager: Any, metrics: Metrics | None = None) -> None:
        self.GetModelStatus = _call("GetModelStatus", handle_status, manager, metrics, _spec_name)
        self.HandleReloadConfigRequest = _call(
            "HandleReloadConfigRequest", handle_reload, manager, metrics, lambda r: ""
        )


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`--grpc_channel_arguments`: "k=v,k2=v2"; integer values are passed as ints.

    Raises:
        ValueError: an entry without "=".
    """
    out: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments entry {item!r} is not key=value")
        try:
            out.append((key, int(value)))
        except ValueError:
            out.append((key, value))
    return out


_BATCHED_PREDICT = "/tensorflow.serving.PredictionService/Predict"


def create_grpc_server(
    manager: Any,
    *,
    bind_address: str,
    port: int,
    metrics: Metrics | None = None,
    channel_arguments: str = "",
    max_workers: int = 16,
    batching: bool = False,
    thread_init: Callable[[], None] | None = None,
    socket_path: str = "",
    tcp: bool = True,
    face: str = "auto",
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    self_test_timeout: float = 2.0,
) -> tuple[GrpcFace, int]:
    """Build and bind (not start) a gRPC server with both services; returns it and the TCP port.

    ``face`` picks the server (grpc_face.py): "inline" (handlers run in the thread that
    polled their message), "stock" (grpc.server), or "auto" (inline where grpc has its core
    API and it answers its start-up self-test within ``self_test_timeout`` seconds, else
    stock). Either runs at most ``max_workers`` (``--grpc_max_threads``) handlers at once.
    With ``batching`` (the manager's runner is a Batcher) on the inline server, a Predict
    waiting for its batch holds no thread: the batch's thread answers it. On grpc.server it
    holds its handler thread until the batch is done, as TF Serving's sync handlers do.

    It listens on ``bind_address:port`` (port 0: a free one) unless ``tcp`` is False, and
    also on ``unix:<socket_path>`` when a path is given (``--grpc_socket_path``; a stale
    socket file there is removed first). The returned port is 0 without TCP.
    ``extra_handlers`` (e.g. a ProfilerService) are served by either face.

    TF Serving sets the maximum message size to INT32_MAX; user channel arguments follow and
    may override it. ``thread_init`` runs first in every server thread.

    Raises:
        ValueError: an unknown face, or neither TCP nor a socket path.
        RuntimeError: an address could not be bound; ``face="inline"`` where grpc lacks the
            inline server's core API.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.so_reuseport", 0),
    ]
    options += parse_channel_arguments(channel_arguments)

    def register(server: Any, inline: bool) -> None:
        prediction = PredictionServicer(manager, metrics, deferred=batching and inline)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager, metrics), server)
        if extra_handlers:
            server.add_generic_rpc_handlers(tuple(extra_handlers))

    host = f"[{bind_address}]" if ":" in bind_address and not bind_address.startswith("[") else bind_address
    recipe = Recipe(
        options=tuple(options),
        max_workers=max_workers,
        thread_init=thread_init,
        quick_methods=(_BATCHED_PREDICT,) if batching else (),
        register=register,
        tcp_host=host if tcp else "",
        socket_path=socket_path,
    )
    server = GrpcFace(recipe, port=port if tcp else 0, face=face, self_test_timeout=self_test_timeout)
    return server, server.port

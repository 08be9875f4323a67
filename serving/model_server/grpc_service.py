"""TF Serving's gRPC API: PredictionService and ModelService on the official protos."""

# The request -> response logic lives in handlers.py (shared with the REST face); this module
# is the gRPC transport: servicer methods, status mapping, deadlines, metrics, the servers.

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.model_server.errors import ServingError
from serving.model_server.grpc_aio import AioGrpcServer
from serving.model_server.grpc_inline import InlineGrpcServer, inline_server
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
from serving.model_server.loop_results import LoopResults
from serving.model_server.metrics import Metrics

_ERROR_MESSAGE_LIMIT = 1024  # grpc_status_util.cc truncates longer messages.


def grpc_message(message: str) -> str:
    """TF Serving's ToGRPCStatus: messages over 1024 characters are truncated."""
    if len(message) > _ERROR_MESSAGE_LIMIT:
        return message[:_ERROR_MESSAGE_LIMIT] + "...TRUNCATED"
    return message


async def _predict_async(
    manager: Any,
    request: predict_pb2.PredictRequest,
    executor: futures.Executor,
    results: LoopResults,
) -> predict_pb2.PredictResponse:
    """handle_predict on the event loop: only the model run leaves it.

    With a batcher the request is enqueued with a deliver callback and awaits a waiter that
    the batch thread completes through ``results`` (no thread waits, and one wake-up of the
    loop per finished batch). A request the batcher does not take (too many rows), or any
    request without a batcher, runs in ``executor``, a pool about as large as the machine
    has cores: more concurrent runs only fight over TensorFlow's own thread pools (measured:
    32 runs in flight on 2 cores gave ~15% fewer requests per second than 2); ``results``
    brings that run's outcome back too.
    """
    servable, signature_name, inputs = predict_inputs(manager, request)
    output_filter = tuple(request.output_filter)
    runner = manager.runner
    enqueue = getattr(runner, "enqueue", None)
    if enqueue is not None:
        waiter, deliver = results.expect()
        if enqueue(servable, signature_name, inputs, output_filter, deliver):
            outputs = await waiter
            return predict_response(request, servable, signature_name, outputs)
        waiter.cancel()
    future = executor.submit(runner.run, servable, signature_name, inputs, output_filter)
    outputs = await results.watch(future)
    return predict_response(request, servable, signature_name, outputs)


_COUNTED_APIS = ("Predict", "Classify", "Regress", "MultiInference")


def _check_deadline(context: Any) -> None:
    """A call whose deadline already passed is answered DEADLINE_EXCEEDED without running."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status a failed call answers: a ServingError's own, else INTERNAL (a bug must still
    answer with a status, not kill the call)."""
    if isinstance(exc, ServingError):
        return exc.code, grpc_message(exc.message)
    return grpc.StatusCode.INTERNAL, grpc_message(f"{type(exc).__name__}: {exc}")


def _call(
    api: str,
    handler: Callable[[Any, Any], Any],
    manager: Any,
    metrics: Metrics | None,
    model_name: Callable[[Any], str],
    executor: futures.Executor | None = None,
    run_async: Callable[[Any, Any, futures.Executor], Awaitable[Any]] | None = None,
) -> Callable[[Any, Any], Any]:
    """A servicer method: async (for the aio server) when given an executor, else sync."""
    if executor is not None:
        return _async_call(api, handler, manager, metrics, model_name, executor, run_async)
    counted = metrics is not None and api in _COUNTED_APIS

    def method(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            _check_deadline(context)
            return handler(manager, request)
        except Exception as exc:
            code, message = _status_of(exc)
            context.abort(code, message)
        finally:
            if counted:
                elapsed_us = (time.perf_counter() - start) * 1e6
                metrics.record_request(model_name(request), api, "GRPC", code, elapsed_us)

    method.__name__ = api
    return method


def _async_call(
    api: str,
    handler: Callable[[Any, Any], Any],
    manager: Any,
    metrics: Metrics | None,
    model_name: Callable[[Any], str],
    executor: futures.Executor,
    run_async: Callable[[Any, Any, futures.Executor], Awaitable[Any]] | None = None,
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Wrap a handler: ServingError -> context.abort(code, message); metrics per request.

    ``handler`` runs in ``executor`` (it may block); ``run_async``, when given, runs on the loop.
    """
    counted = metrics is not None and api in _COUNTED_APIS

    async def method(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            _check_deadline(context)
            if run_async is not None:
                return await run_async(manager, request, executor)
            return await asyncio.get_running_loop().run_in_executor(executor, handler, manager, request)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code, message = _status_of(exc)
            await context.abort(code, message)
        finally:
            if counted:
                elapsed_us = (time.perf_counter() - start) * 1e6
                metrics.record_request(model_name(request), api, "GRPC", code, elapsed_us)

    method.__name__ = api
    return method


def _spec_name(request: Any) -> str:
    return request.model_spec.name


def _tasks_name(request: Any) -> str:
    return request.tasks[0].model_spec.name if request.tasks else ""


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService over a ModelManager.

    With ``executor`` the methods are coroutines for a grpc.aio server (blocking handlers run
    in ``executor``; Predict stays on the loop when given ``loop_results``, with its direct runs
    in ``run_executor``); without, plain sync methods.
    """

    def __init__(
        self,
        manager: Any,
        executor: futures.Executor | None = None,
        metrics: Metrics | None = None,
        run_executor: futures.Executor | None = None,
        loop_results: LoopResults | None = None,
    ) -> None:
        predict_async = (
            None if loop_results is None else functools.partial(_predict_async, results=loop_results)
        )
        self.Predict = _call(
            "Predict", handle_predict, manager, metrics, _spec_name, run_executor or executor, predict_async
        )
        self.Classify = _call("Classify", handle_classify, manager, metrics, _spec_name, executor)
        self.Regress = _call("Regress", handle_regress, manager, metrics, _spec_name, executor)
        self.MultiInference = _call(
            "MultiInference", handle_multi_inference, manager, metrics, _tasks_name, executor
        )
        self.GetModelMetadata = _call(
            "GetModelMetadata", handle_metadata, manager, metrics, _spec_name, executor
        )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService over a ModelManager."""

    def __init__(
        self, manager: Any, executor: futures.Executor | None = None, metrics: Metrics | None = None
    ) -> None:
        self.GetModelStatus = _call("GetModelStatus", handle_status, manager, metrics, _spec_name, executor)
        self.HandleReloadConfigRequest = _call(
            "HandleReloadConfigRequest", handle_reload, manager, metrics, lambda r: "", executor
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


def create_grpc_server(
    manager: Any,
    *,
    bind_address: str,
    port: int,
    metrics: Metrics | None = None,
    channel_arguments: str = "",
    max_workers: int = 16,
    asynchronous: bool = False,
    inline: bool = True,
) -> tuple[grpc.Server | AioGrpcServer | InlineGrpcServer, int]:
    """Build (not start) a gRPC server with both services; returns it and the bound port.

    ``asynchronous`` (what ModelServer uses with batching on) builds a grpc.aio server on its
    own loop thread: a Predict waiting for its batch holds no thread, and the batch thread
    wakes it through the batch's future (measured ~+10% req/s with 32 clients). Blocking
    handlers run in a pool of ``max_workers`` threads (``--grpc_max_threads``), direct
    Session runs in a pool of min(max_workers, cores). Otherwise it is a sync server with
    ``max_workers`` threads, which measured faster without batching (each request is a
    Session run that the aio loop would have to hand to a thread and back): the
    InlineGrpcServer (``inline``, handlers run in the thread that polled the message), or
    grpc.server where grpc lacks what that needs or ``inline`` is False.

    TF Serving sets the maximum message size to INT32_MAX; user channel arguments follow and
    may override it.

    Raises:
        RuntimeError: the address could not be bound.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.so_reuseport", 0),
    ]
    options += parse_channel_arguments(channel_arguments)
    server: grpc.Server | AioGrpcServer | InlineGrpcServer
    if asynchronous:
        executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-handler")
        run_executor = futures.ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, os.cpu_count() or 1)), thread_name_prefix="grpc-predict"
        )
        server = AioGrpcServer(options, [executor, run_executor])
        servicers = (
            PredictionServicer(manager, executor, metrics, run_executor, LoopResults(server.loop)),
            ModelServicer(manager, executor, metrics),
        )
    else:

        def stock() -> grpc.Server:
            pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-handler")
            return grpc.server(pool, options=options)

        server = inline_server(options, max_workers, stock) if inline else stock()
        servicers = (PredictionServicer(manager, None, metrics), ModelServicer(manager, None, metrics))
    try:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicers[0], server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicers[1], server)
        host = f"[{bind_address}]" if ":" in bind_address else bind_address
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as exc:
            raise RuntimeError(f"could not bind gRPC server to {host}:{port}: {exc}") from None
        if bound == 0:
            raise RuntimeError(f"could not bind gRPC server to {host}:{port}")
    except BaseException:
        server.stop(None)
        raise
    return server, bound

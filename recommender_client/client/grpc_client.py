"""TF Serving over gRPC on our own messages: one channel reused, a deadline on every call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from recommender_client.client.base import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    RetryPolicy,
    TFServingClient,
    check_timeout,
)
from recommender_client.client.errors import (
    InvalidRequest,
    ModelNotFound,
    ServingTimeout,
    ServingUnavailable,
    TFServingError,
)
from recommender_client.client.messages import (
    build_metadata_request,
    build_predict_request,
    metadata_from_response,
    model_spec,
    prediction_from_response,
    status_list,
)
from recommender_client.client.metadata import ModelMetadata, ModelVersionStatus, Outputs
from recommender_client.protos import get_model_status_pb2
from recommender_client.protos.services import ModelServiceStub, PredictionServiceStub

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# gRPC's reconnect backoff grows to 120 s by default: after a long model-server outage the
# channel would keep failing fast for minutes after the server is back. Cap it at 1 s.
# gRPC's default policy, pick_first, sends every call to the first address that connects: behind
# a Kubernetes headless Service (a dns: name with one A record per pod) one TF Serving pod took
# all of a ranker's traffic. round_robin connects to every address the name resolves to and
# spreads calls over the ready ones; with a single address it behaves as pick_first.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.lb_policy_name", "round_robin"),
)


def channel_options_for(
    max_message_bytes: int, extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """A channel's arguments: the defaults, message limits both ways, then ``extra`` overriding them.

    Raises:
        ValueError: ``max_message_bytes`` below 1.
    """
    if max_message_bytes < 1:
        raise ValueError(f"max_message_bytes must be >= 1, got {max_message_bytes}")
    options = dict(DEFAULT_CHANNEL_OPTIONS)
    options["grpc.max_send_message_length"] = max_message_bytes
    options["grpc.max_receive_message_length"] = max_message_bytes
    options.update(dict(extra))
    return list(options.items())


_INVALID = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


def error_from_rpc(exc: grpc.RpcError, what: str) -> TFServingError:
    """Map a gRPC status to the client's exception, keeping the server's message."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or ""
    message = f"{what}: {code.name}: {details}"
    kwargs: dict[str, Any] = {"code": code.name, "server_message": details}
    if code is grpc.StatusCode.UNAVAILABLE:
        return ServingUnavailable(message, **kwargs)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServingTimeout(message, **kwargs)
    if code is grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(message, **kwargs)
    if code in _INVALID:
        return InvalidRequest(message, **kwargs)
    return TFServingError(message, **kwargs)


class GrpcClient(TFServingClient):
    """TF Serving's PredictionService and ModelService over one reused gRPC channel.

    Args:
        target: ``host:port`` of the server's gRPC port (8500 by convention), or any gRPC name:
            ``dns:///tfs.ns.svc:8500``, ``ipv4:10.0.0.1:8500,10.0.0.2:8500`` (calls go round robin).
        timeout: Default deadline in seconds for a whole call, retries included.
        retries: Extra attempts after UNAVAILABLE (never after any other status).
        backoff: Pause before the first retry, doubled each time (see RetryPolicy).
        channel: A ready channel to use instead of opening one; the caller keeps owning it,
            so ``close()`` leaves it open.
        max_message_bytes: Send/receive limit for a channel this client opens.
        channel_options: Extra ``grpc.*`` channel arguments for a channel this client opens;
            they override the defaults (message limits, reconnect backoff capped at 1 s,
            ``round_robin`` over every address the target resolves to).
        retry_policy: Full control over retries; overrides ``retries`` and ``backoff``.

    Example::

        with GrpcClient("127.0.0.1:8500", timeout=0.5) as client:
            scores = client.predict({"x": np.array([1.0, 2.0], np.float32)}, model_name="ctr")["ctr"]
    """

    def __init__(
        self,
        target: str = "127.0.0.1:8500",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        channel: grpc.Channel | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.timeout = check_timeout(timeout)
        self.target = target
        self._retry = retry_policy or RetryPolicy(retries=retries, backoff=backoff)
        options = channel_options_for(max_message_bytes, channel_options)
        self._owns_channel = channel is None
        if channel is None:
            channel = grpc.insecure_channel(target, options=options)
        self._channel = channel
        self._predictions = PredictionServiceStub(channel)
        self._models = ModelServiceStub(channel)
        self._closed = False

    def _call(self, method: Callable[..., Any], request: Any, timeout: float | None, what: str) -> Any:
        if self._closed:
            raise RuntimeError("this GrpcClient is closed")
        seconds = self.timeout if timeout is None else check_timeout(timeout)

        def attempt(left: float) -> Any:
            try:
                return method(request, timeout=left)
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, what) from None

        return self._retry.run(attempt, timeout=seconds, what=what)

    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        *,
        model_name: str,
        signature_name: str = "serving_default",
        version: int | None = None,
        version_label: str | None = None,
        output_filter: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> Outputs:
        """Run the signature; the answer is an ``Outputs`` dict naming the version that answered."""
        wanted = None if output_filter is None else list(output_filter)
        request = build_predict_request(
            inputs,
            model_name=model_name,
            signature_name=signature_name,
            version=version,
            version_label=version_label,
            output_filter=wanted,
        )
        response = self._call(self._predictions.Predict, request, timeout, f"Predict on {model_name!r}")
        return prediction_from_response(response, model_name=model_name, output_filter=wanted)

    def model_status(
        self, model_name: str, *, version: int | None = None, timeout: float | None = None
    ) -> list[ModelVersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        model_spec(request.model_spec, model_name, version=version)
        response = self._call(
            self._models.GetModelStatus, request, timeout, f"GetModelStatus of {model_name!r}"
        )
        return status_list(response)

    def model_metadata(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = None,
    ) -> ModelMetadata:
        request = build_metadata_request(model_name, version=version, version_label=version_label)
        response = self._call(
            self._predictions.GetModelMetadata, request, timeout, f"GetModelMetadata of {model_name!r}"
        )
        return metadata_from_response(response)

    def close(self) -> None:
        if not self._closed and self._owns_channel:
            self._channel.close()
        self._closed = True

    def __repr__(self) -> str:
        return f"GrpcClient(target={self.target!r}, timeout={self.timeout})"

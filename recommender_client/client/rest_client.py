"""TF Serving's REST API (columnar JSON) over one reused httpx.Client, a deadline on every call."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from google.protobuf import json_format

from recommender_client.client.base import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    RetryPolicy,
    TFServingClient,
    check_timeout,
)
from recommender_client.client.errors import (
    BadResponse,
    InvalidRequest,
    ModelNotFound,
    ServingTimeout,
    ServingUnavailable,
    TFServingError,
)
from recommender_client.client.json_tensors import array_to_json, json_to_array
from recommender_client.client.messages import (
    check_model_spec,
    select_outputs,
    signature_specs,
    status_list,
)
from recommender_client.client.metadata import ModelMetadata, ModelVersionStatus
from recommender_client.protos import get_model_metadata_pb2, get_model_status_pb2


def error_from_status(status: int, content: bytes, what: str) -> TFServingError:
    """Map a non-200 answer to the client's exception; TF Serving puts its message in ``error``."""
    try:
        server_message = str(json.loads(content)["error"])
    except (ValueError, KeyError, TypeError):
        server_message = content[:500].decode("utf-8", "replace")
    message = f"{what}: HTTP {status}: {server_message}"
    if status == 503:
        return ServingUnavailable(message, code=status, server_message=server_message)
    if status in (408, 504):
        return ServingTimeout(message, code=status, server_message=server_message)
    if status == 404:
        return ModelNotFound(message, code=status, server_message=server_message)
    if 400 <= status < 500:
        return InvalidRequest(message, code=status, server_message=server_message)
    return TFServingError(message, code=status, server_message=server_message)


def model_path(model_name: str, *, version: int | None = None, version_label: str | None = None) -> str:
    """``/v1/models/<name>[/versions/<v>|/labels/<label>]``, percent-encoded."""
    version = check_model_spec(model_name, version=version, version_label=version_label)
    path = f"/v1/models/{quote(model_name, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    elif version_label is not None:
        path += f"/labels/{quote(version_label, safe='')}"
    return path


def decode_answer(status: int, content: bytes, what: str) -> Any:
    """The JSON of a 200 answer; any other status is the matching client error."""
    if status != 200:
        raise error_from_status(status, content, what)
    try:
        return json.loads(content)
    except ValueError as exc:
        raise BadResponse(f"{what}: response is not JSON: {exc}") from None


def transport_error(exc: httpx.TransportError, what: str, left: float) -> TFServingError:
    """A timeout or connection failure as the client's exception."""
    if isinstance(exc, httpx.TimeoutException):
        return ServingTimeout(f"{what}: no answer within {left:.3g}s ({type(exc).__name__})")
    return ServingUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def predict_call(
    inputs: Mapping[str, np.ndarray],
    *,
    model_name: str,
    signature_name: str,
    version: int | None,
    version_label: str | None,
) -> tuple[str, bytes]:
    """The ``:predict`` path and columnar JSON body for ``inputs``."""
    if not inputs:
        raise InvalidRequest("predict needs at least one input tensor")
    path = model_path(model_name, version=version, version_label=version_label) + ":predict"
    payload: dict[str, Any] = {"inputs": {name: array_to_json(a, name=name) for name, a in inputs.items()}}
    if signature_name:
        payload["signature_name"] = signature_name
    return path, json.dumps(payload, separators=(",", ":")).encode("utf-8")


def predict_outputs(answer: Any, what: str) -> Any:
    """The ``outputs`` of a predict answer: a dict by name, or one unnamed value (single output)."""
    if not isinstance(answer, dict) or "outputs" not in answer:
        raise BadResponse(
            f"{what}: response has no 'outputs' (keys {sorted(answer) if isinstance(answer, dict) else type(answer).__name__})"
        )
    return answer["outputs"]


def decode_outputs(
    outputs: dict[str, Any], output_filter: list[str] | None, float_dtype: type
) -> dict[str, np.ndarray]:
    """Named JSON outputs as arrays, restricted to ``output_filter``."""
    decoded = {n: json_to_array(v, name=n, float_dtype=float_dtype) for n, v in outputs.items()}
    return select_outputs(decoded, output_filter)


def parse_status(answer: Any, what: str) -> list[ModelVersionStatus]:
    """A GetModelStatus JSON answer as version statuses."""
    message = get_model_status_pb2.GetModelStatusResponse()
    try:
        json_format.ParseDict(answer, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadResponse(f"{what}: not a GetModelStatusResponse: {exc}") from None
    return status_list(message)


def parse_metadata(answer: Any, model_name: str, what: str) -> ModelMetadata:
    """A GetModelMetadata JSON answer as ModelMetadata."""
    try:
        spec = answer["model_spec"]
        signature_json = answer["metadata"]["signature_def"]
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        json_format.ParseDict(signature_json, signature_map, ignore_unknown_fields=True)
        resolved = int(spec["version"]) if spec.get("version") not in (None, "") else None
    except (KeyError, TypeError, ValueError, json_format.ParseError) as exc:
        raise BadResponse(f"{what}: not a GetModelMetadataResponse: {type(exc).__name__}: {exc}") from None
    return ModelMetadata(
        str(spec.get("name", model_name)), resolved, signature_specs(signature_map.signature_def)
    )


def single_output_name(names: tuple[str, ...], what: str) -> str:
    """The one output an unnamed ``outputs`` value belongs to."""
    if len(names) != 1:
        raise BadResponse(f"{what}: unnamed 'outputs' but the signature has outputs {list(names)}")
    return names[0]


class RestClient(TFServingClient):
    """TF Serving's REST API (``:predict`` columnar, model status, metadata) over one httpx.Client.

    Args:
        base_url: ``http://host:port`` of the REST port (8501 by convention).
        timeout: Default deadline in seconds for a whole call, retries included (applied to each
            of connect, write and read of every attempt).
        retries: Extra attempts after a connection failure or HTTP 503 (never after anything else).
        backoff: Pause before the first retry, doubled each time (see RetryPolicy).
        transport: An httpx transport to use instead of the default one (e.g. with its own pool
            limits, or ``httpx.MockTransport`` in a caller's tests).
        float_dtype: What JSON numbers with a fraction decode to (JSON has no dtypes).
        retry_policy: Full control over retries; overrides ``retries`` and ``backoff``.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8501",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        float_dtype: type = np.float32,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.timeout = check_timeout(timeout)
        self.base_url = base_url.rstrip("/")
        self._retry = retry_policy or RetryPolicy(retries=retries, backoff=backoff)
        self._float_dtype = float_dtype
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=self.timeout,
            headers={"Accept": "application/json"},
        )
        # (model, version, label, signature) -> output names, to name a lone unnamed output.
        self._output_names: dict[tuple[str, int | None, str | None, str], tuple[str, ...]] = {}

    def _request(
        self, method: str, path: str, *, body: bytes | None, timeout: float | None, what: str
    ) -> Any:
        if self._http.is_closed:
            raise RuntimeError("this RestClient is closed")
        seconds = self.timeout if timeout is None else check_timeout(timeout)
        headers = {"Content-Type": "application/json"} if body is not None else None

        def attempt(left: float) -> Any:
            try:
                response = self._http.request(method, path, content=body, headers=headers, timeout=left)
            except httpx.TransportError as exc:
                raise transport_error(exc, what, left) from None
            return decode_answer(response.status_code, response.content, what)

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
    ) -> dict[str, np.ndarray]:
        """See TFServingClient.predict; ``output_filter`` is applied here (REST has none)."""
        wanted = None if output_filter is None else list(output_filter)
        path, body = predict_call(
            inputs,
            model_name=model_name,
            signature_name=signature_name,
            version=version,
            version_label=version_label,
        )
        what = f"predict on {model_name!r}"
        outputs = predict_outputs(self._request("POST", path, body=body, timeout=timeout, what=what), what)
        if not isinstance(outputs, dict):
            # TF Serving drops the name when the signature has exactly one output.
            key = (model_name, version, version_label, signature_name or "serving_default")
            names = self._output_names.get(key)
            if names is None:
                meta = self.model_metadata(
                    model_name, version=version, version_label=version_label, timeout=timeout
                )
                names = self._output_names[key] = tuple(meta.signature(key[3]).outputs)
            outputs = {single_output_name(names, what): outputs}
        return decode_outputs(outputs, wanted, self._float_dtype)

    def model_status(
        self, model_name: str, *, version: int | None = None, timeout: float | None = None
    ) -> list[ModelVersionStatus]:
        what = f"status of {model_name!r}"
        answer = self._request(
            "GET", model_path(model_name, version=version), body=None, timeout=timeout, what=what
        )
        return parse_status(answer, what)

    def model_metadata(
        self,
        model_name: str,
        *,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float | None = None,
    ) -> ModelMetadata:
        what = f"metadata of {model_name!r}"
        path = model_path(model_name, version=version, version_label=version_label) + "/metadata"
        answer = self._request("GET", path, body=None, timeout=timeout, what=what)
        return parse_metadata(answer, model_name, what)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"RestClient(base_url={self.base_url!r}, timeout={self.timeout})"

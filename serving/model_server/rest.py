"""TF Serving's REST API (paths, JSON, status codes) on a small threaded HTTP/1.1 server."""

# Routing and texts follow `http_rest_api_util.cc` / `http_rest_api_handler.cc`; status codes
# follow `http_server.cc` (via errors.http_status). The transport is http_transport.py.

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    regression_pb2,
)

from serving.model_server import handlers, json_examples, json_response, json_tensor
from serving.model_server.errors import ServingError
from serving.model_server.http_transport import JSON
from serving.model_server.json_debug import excerpt
from serving.model_server.json_text import error_body
from serving.model_server.metrics import Metrics
from serving.model_server.signatures import DEFAULT_SIGNATURE

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_INT64_MAX = 2**63 - 1


def _json_proto(message: Any) -> str:
    """protobuf JSON as TF Serving prints it (add_whitespace, always_print_primitive_fields)."""
    return json_format.MessageToJson(
        message, indent=1, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


class RestApi:
    """Request -> (HTTP status, content type, body), independent of the transport.

    Args:
        manager: the ModelManager (get_servable, status, runner).
        metrics: where request counts and latencies go.
        prometheus_path: the metrics page path, or None when monitoring is off.
    """

    def __init__(
        self, manager: Any, *, metrics: Metrics | None = None, prometheus_path: str | None = None
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.prometheus_path = prometheus_path

    def handle(
        self, method: str, target: str, body: bytes, deadline: float | None = None
    ) -> tuple[int, str, bytes]:
        """Answer one request; every failure becomes TF Serving's {"error": ...} body.

        ``deadline`` (``time.monotonic()``, from ``--rest_api_timeout_in_ms``) goes into the run,
        so a request that times out stops using the model too.
        """
        path = target.split("?", 1)[0]
        if self.prometheus_path is not None and path == self.prometheus_path and self.metrics is not None:
            return 200, "text/plain", self.metrics.exposition().encode("utf-8")
        if not _API_PATH.fullmatch(path):
            return 404, "text/plain", b""
        start = time.perf_counter()
        api, model_name, code = "", "", grpc.StatusCode.OK
        try:
            api, model_name, run = self._route(method, path, body, deadline)
            return 200, JSON, run()
        except ServingError as err:
            code = err.code
            return err.http_status, JSON, error_body(err.message)
        except Exception as exc:  # a bug still answers with TF Serving's error shape
            code = grpc.StatusCode.INTERNAL
            return 500, JSON, error_body(excerpt(f"{type(exc).__name__}: {exc}"))
        finally:
            if self.metrics is not None and api:
                self.metrics.record_request(
                    model_name, api, "REST", code, (time.perf_counter() - start) * 1e6
                )

    def _route(
        self, method: str, path: str, body: bytes, deadline: float | None = None
    ) -> tuple[str, str, Callable[[], bytes]]:
        """Match the path: (API name, model name, the call that produces the body)."""
        malformed = ServingError.invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
        elif method == "GET":
            match = _STATUS_PATH.fullmatch(path)
        else:
            raise malformed
        if match is None:
            raise malformed
        raw_name, version_text, raw_label, verb = match.groups()
        name = unquote(raw_name) if raw_name else ""
        version = None
        if version_text:
            # absl::SimpleAtoi into an int64: at most 19 digits (Python's int() refuses 4,300+)
            if len(version_text.lstrip("0")) > 19 or int(version_text) > _INT64_MAX:
                raise ServingError.invalid_argument(
                    f"Failed to convert version: {excerpt(version_text)} to numeric."
                )
            version = int(version_text)
        label = unquote(raw_label) if raw_label else None
        if method == "POST":
            routes = {"predict": ("Predict", self._predict), "classify": ("Classify", self._classify)}
            routes["regress"] = ("Regress", self._regress)
            if verb not in routes:  # the path regex ignores case, the verb comparison does not
                raise malformed
            api, handler = routes[verb]
            return api, name, lambda: handler(name, version, label, body, deadline)
        if not name:
            raise ServingError.invalid_argument("Missing model name in request.")
        if verb == "metadata":
            return "GetModelMetadata", name, lambda: self._metadata(name, version, label)
        return "GetModelStatus", name, lambda: self._status(name, version, label)

    def _spec(self, spec: Any, name: str, version: int | None, label: str | None) -> None:
        spec.name = name
        if version is not None:
            spec.version.value = version
        if label is not None:
            spec.version_label = label

    def _predict(
        self, name: str, version: int | None, label: str | None, body: bytes, deadline: float | None
    ) -> bytes:
        doc = json_tensor.parse_json(body)
        signature = json_tensor.signature_name(doc)
        servable = self.manager.get_servable(name, version, label)
        key = signature or DEFAULT_SIGNATURE
        info = servable.signatures.get(key)
        if info is None:
            raise ServingError.invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        dtypes = {alias: tensor.dtype for alias, tensor in info.inputs.items()}
        inputs, fmt = json_tensor.predict_inputs(doc, dtypes, signature)
        run = self.manager.runner.run
        outputs = (
            run(servable, signature, inputs, ())
            if deadline is None
            else run(servable, signature, inputs, (), deadline=deadline)
        )
        return json_response.predict_response_json(outputs, fmt)

    def _examples_request(
        self, request: Any, name: str, version: int | None, label: str | None, body: bytes
    ) -> Any:
        """Classify and Regress requests are filled alike: spec, signature, then the examples."""
        self._spec(request.model_spec, name, version, label)
        doc = json_tensor.parse_json(body)
        request.model_spec.signature_name = json_tensor.signature_name(doc)
        json_examples.examples_request(doc, request.input)
        return request

    def _classify(
        self, name: str, version: int | None, label: str | None, body: bytes, deadline: float | None
    ) -> bytes:
        request = self._examples_request(
            classification_pb2.ClassificationRequest(), name, version, label, body
        )
        response = handlers.handle_classify(self.manager, request, deadline)
        return json_response.classification_json(response.result)

    def _regress(
        self, name: str, version: int | None, label: str | None, body: bytes, deadline: float | None
    ) -> bytes:
        request = self._examples_request(regression_pb2.RegressionRequest(), name, version, label, body)
        response = handlers.handle_regress(self.manager, request, deadline)
        return json_response.regression_json(response.result)

    def _metadata(self, name: str, version: int | None, label: str | None) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=[handlers.SIGNATURE_DEF_FIELD]
        )
        self._spec(request.model_spec, name, version, label)
        response = handlers.handle_metadata(self.manager, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[handlers.SIGNATURE_DEF_FIELD].Unpack(signature_map)
        # http_rest_api_util.cc ToJsonString concatenates the two parts exactly like this.
        text = (
            "{\n"
            + '"model_spec":'
            + _json_proto(response.model_spec)
            + ",\n"
            + '"metadata": {'
            + '"signature_def": '
            + _json_proto(signature_map)
            + "}\n}\n"
        )
        return text.encode("utf-8")

    def _status(self, name: str, version: int | None, label: str | None) -> bytes:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, name, version, label)
        return _json_proto(handlers.handle_status(self.manager, request)).encode("utf-8")

"""TF Serving's REST API (paths, JSON, status codes) on a small threaded HTTP/1.1 server."""

# Routing and texts follow `http_rest_api_util.cc` / `http_rest_api_handler.cc`; status codes
# follow `http_server.cc` (via errors.http_status). The transport is http_transport.py.

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent import futures
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
from serving.model_server.http_transport import JSON, HttpServer
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

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        """Answer one request; every failure becomes TF Serving's {"error": ...} body."""
        path = target.split("?", 1)[0]
        if self.prometheus_path is not None and path == self.prometheus_path and self.metrics is not None:
            return 200, "text/plain", self.metrics.exposition().encode("utf-8")
        if not _API_PATH.fullmatch(path):
            return 404, "text/plain", b""
        start = time.perf_counter()
        api, model_name, code = "", "", grpc.StatusCode.OK
        try:
            api, model_name, run = self._route(method, path, body)
            return 200, JSON, run()
        except ServingError as err:
            code = err.code
            return err.http_status, JSON, error_body(err.message)
        except Exception as exc:  # a bug still answers with TF Serving's error shape
            code = grpc.StatusCode.INTERNAL
            return 500, JSON, error_body(f"{type(exc).__name__}: {exc}")
        finally:
            if self.metrics is not None and api:
                self.metrics.record_request(
                    model_name, api, "REST", code, (time.perf_counter() - start) * 1e6
                )

    def _route(self, method: str, path: str, body: bytes) -> tuple[str, str, Callable[[], bytes]]:
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
            version = int(version_text)
            if version > _INT64_MAX:
                raise ServingError.invalid_argument(f"Failed to convert version: {version_text} to numeric.")
        label = unquote(raw_label) if raw_label else None
        if method == "POST":
            routes = {"predict": ("Predict", self._predict), "classify": ("Classify", self._classify)}
            routes["regress"] = ("Regress", self._regress)
            if verb not in routes:  # the path regex ignores case, the verb comparison does not
                raise malformed
            api, handler = routes[verb]
            return api, name, lambda: handler(name, version, label, body)
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

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        doc = json_tensor.parse_json(body)
        signature = json_tensor.signature_name(doc)
        servable = self.manager.get_servable(name, version, label)
        key = signature or DEFAULT_SIGNATURE
        info = servable.signatures.get(key)
        if info is None:
            raise ServingError.invalid_argument(f'Serving signature name: "{key}" not found in signature def')
        dtypes = {alias: tensor.dtype for alias, tensor in info.inputs.items()}
        inputs, fmt = json_tensor.predict_inputs(doc, dtypes, signature)
        outputs = self.manager.runner.run(servable, signature, inputs, ())
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

    def _classify(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        request = self._examples_request(
            classification_pb2.ClassificationRequest(), name, version, label, body
        )
        response = handlers.handle_classify(self.manager, request)
        return json_response.classification_json(response.result)

    def _regress(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        request = self._examples_request(regression_pb2.RegressionRequest(), name, version, label, body)
        response = handlers.handle_regress(self.manager, request)
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
        max_body_bytes: larger request bodies answer 413 without being read.
        num_threads: `--rest_api_num_threads`, requests processed at once (when a timeout is
            set; without one each connection's thread processes its own requests).
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
    ) -> None:
        """``thread_init`` runs first in the accept thread and every worker thread."""
        self.api = RestApi(manager, metrics=metrics, prometheus_path=prometheus_path)
        self._thread_init = thread_init
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self._pool = futures.ThreadPoolExecutor(
            max_workers=max(1, num_threads), thread_name_prefix="rest-worker", initializer=thread_init
        )
        try:
            self._http = HttpServer((bind_address, port), self._answer)
        except OSError as exc:
            self._pool.shutdown(wait=False)
            raise RuntimeError(f"could not bind REST server to {bind_address}:{port}: {exc}") from None
        self._http.max_body_bytes = max_body_bytes
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._http.server_address[1])

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        if self.timeout_s is None:
            return self.api.handle(method, target, body)
        future = self._pool.submit(self.api.handle, method, target, body)
        try:
            return future.result(timeout=self.timeout_s)
        except futures.TimeoutError:
            return 504, JSON, error_body("Deadline Exceeded")

    def start(self) -> int:
        """Start serving in a daemon thread; returns the bound port."""
        self._thread = threading.Thread(target=self._serve, name="rest-server", daemon=True)
        self._thread.start()
        return self.port

    def _serve(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        self._http.serve_forever()

    def stop(self) -> None:
        """Stop accepting, close the socket and release the worker threads."""
        self._http.stopping.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=5)
        self._http.server_close()
        self._http.close_connections()
        self._pool.shutdown(wait=False, cancel_futures=True)

"""TF Serving's REST API (paths, JSON, status codes) on a small threaded HTTP/1.1 server.

Routing and texts follow `http_rest_api_util.cc` / `http_rest_api_handler.cc`; status codes
follow `http_server.cc` (via errors.http_status). The HTTP layer is a minimal keep-alive
HTTP/1.1 server on `socketserver` (no dependency, far less per-request work than
`http.server`), since the REST face's overhead sits on every ranking request.
"""

from __future__ import annotations

import re
import socket
import socketserver
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

from serving.model_server import grpc_service, json_tensor
from serving.model_server.errors import ServingError
from serving.model_server.json_text import error_body
from serving.model_server.metrics import Metrics
from serving.model_server.servable import DEFAULT_SIGNATURE

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_JSON = "application/json"
_MAX_HEADER_BYTES = 65536
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
            return 200, _JSON, run()
        except ServingError as err:
            code = err.code
            return err.http_status, _JSON, error_body(err.message)
        except Exception as exc:  # a bug still answers with TF Serving's error shape
            code = grpc.StatusCode.INTERNAL
            return 500, _JSON, error_body(f"{type(exc).__name__}: {exc}")
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
            handlers = {"predict": ("Predict", self._predict), "classify": ("Classify", self._classify)}
            handlers["regress"] = ("Regress", self._regress)
            if verb not in handlers:  # the path regex ignores case, the verb comparison does not
                raise malformed
            api, handler = handlers[verb]
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
        return json_tensor.predict_response_json(outputs, fmt)

    def _classify(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, name, version, label)
        doc = json_tensor.parse_json(body)
        request.model_spec.signature_name = json_tensor.signature_name(doc)
        json_tensor.examples_request(doc, request.input)
        response = grpc_service.handle_classify(self.manager, request)
        return json_tensor.classification_json(response.result)

    def _regress(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, name, version, label)
        doc = json_tensor.parse_json(body)
        request.model_spec.signature_name = json_tensor.signature_name(doc)
        json_tensor.examples_request(doc, request.input)
        response = grpc_service.handle_regress(self.manager, request)
        return json_tensor.regression_json(response.result)

    def _metadata(self, name: str, version: int | None, label: str | None) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=[grpc_service.SIGNATURE_DEF_FIELD]
        )
        self._spec(request.model_spec, name, version, label)
        response = grpc_service.handle_metadata(self.manager, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[grpc_service.SIGNATURE_DEF_FIELD].Unpack(signature_map)
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
        return _json_proto(grpc_service.handle_status(self.manager, request)).encode("utf-8")


class _BodyTooLarge(Exception):
    pass


class _Connection(socketserver.StreamRequestHandler):
    """One keep-alive HTTP/1.1 connection: read requests, answer them in order."""

    server: _HttpServer
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle(self) -> None:
        while not self.server.stopping.is_set():
            try:
                if not self._one_request():
                    return
            except (ConnectionError, TimeoutError, OSError):
                return

    def _read_body(self, headers: dict[str, str]) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(_MAX_HEADER_BYTES).strip():
                        pass
                    return b"".join(parts)
                total += size
                if total > limit:
                    raise _BodyTooLarge(total)
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(headers.get("content-length", "0") or "0")
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            raise _BodyTooLarge(length)
        return self.rfile.read(length) if length else b""

    def _one_request(self) -> bool:
        line = self.rfile.readline(_MAX_HEADER_BYTES + 1)
        if not line:
            return False
        if not line.strip():
            return True  # stray CRLF between requests
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError:
            self._send(400, "text/plain", b"Bad request line", close=True)
            return False
        headers: dict[str, str] = {}
        size = len(line)
        while True:
            raw = self.rfile.readline(_MAX_HEADER_BYTES + 1)
            size += len(raw)
            if size > _MAX_HEADER_BYTES:
                self._send(431, "text/plain", b"Request header fields too large", close=True)
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            key, _, value = raw.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = self._read_body(headers)
        except _BodyTooLarge as exc:
            message = (
                f"Request body of {exc.args[0]} bytes exceeds the limit of {self.server.max_body_bytes} bytes"
            )
            self._send(413, _JSON, error_body(message), close=True)
            return False
        except ValueError:
            self._send(400, _JSON, error_body("Malformed Content-Length or chunked body"), close=True)
            return False
        status, content_type, payload = self.server.answer(method, target, body)
        self._send(status, content_type, payload, close=not keep_alive)
        return keep_alive

    def _send(self, status: int, content_type: str, payload: bytes, *, close: bool) -> None:
        reason = _REASONS.get(status, "Error")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
        if close:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + payload)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _HttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], answer: Callable[[str, str, bytes], tuple[int, str, bytes]]
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.answer = answer
        self.max_body_bytes = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Connection)

    def close_connections(self) -> None:
        """Shut down open keep-alive connections so their threads end."""
        with self.lock:
            open_sockets = list(self.connections)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


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
    ) -> None:
        self.api = RestApi(manager, metrics=metrics, prometheus_path=prometheus_path)
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self._pool = futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="rest-worker")
        try:
            self._http = _HttpServer((bind_address, port), self._answer)
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
            return 504, _JSON, error_body("Deadline Exceeded")

    def start(self) -> int:
        """Start serving in a daemon thread; returns the bound port."""
        self._thread = threading.Thread(target=self._http.serve_forever, name="rest-server", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop accepting, close the socket and release the worker threads."""
        self._http.stopping.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=5)
        self._http.server_close()
        self._http.close_connections()
        self._pool.shutdown(wait=False, cancel_futures=True)

"""The embedded model server: manager, optional batcher, gRPC and REST faces, started and stopped together."""

from __future__ import annotations

import functools
import logging
from typing import Any

from serving.model_server.affinity import python_threads_cpu, thread_pinner, unpinned_loads
from serving.model_server.batching import Batcher, BatchingOptions
from serving.model_server.config import (
    ServerOptions,
    initial_model_config,
    prometheus_path,
    read_batching_parameters,
    read_model_server_config,
    read_monitoring_config,
)
from serving.model_server.config_rules import reload_roots
from serving.model_server.load_retry import RetryPolicy
from serving.model_server.loader import load_servable
from serving.model_server.manager import ModelManager
from serving.model_server.servable import DirectRunner
from serving.model_server.tensor_limits import BudgetedRunner

log = logging.getLogger(__name__)


class ModelServer:
    """tensorflow_model_server in-process: what ``python -m serving.model_server`` runs.

    ``start()`` loads the models (raising ServingError when a servable does not become
    available, as the real server refuses to start), then opens gRPC on ``options.port`` and,
    when enabled, REST on ``options.rest_api_port``. Port 0 binds a free port; the bound ports
    are ``grpc_port`` and ``rest_port``. Use as a context manager in tests.

    Args:
        options: the parsed flags.
        enable_rest: force REST on (with ``rest_api_port=0`` it binds a free port) or off;
            None follows TF Serving (REST only when ``rest_api_port > 0``).
        serve_tcp: False serves gRPC on ``--grpc_socket_path`` only (the command line's
            ``--port=0``; in Python, port 0 otherwise binds a free port).

    Raises:
        ConfigError: from the constructor, for unreadable or unparsable config files.
    """

    def __init__(
        self, options: ServerOptions, *, enable_rest: bool | None = None, serve_tcp: bool = True
    ) -> None:
        self.options = options
        self.serve_tcp = serve_tcp
        self.enable_rest = options.rest_api_port > 0 if enable_rest is None else enable_rest
        if self.enable_rest and options.rest_api_port == options.port and options.port != 0:
            # server.cc logs this and serves gRPC only.
            log.error(
                "server_options.http_port cannot be same as grpc_port. Please use a different "
                "port for HTTP/REST API. Skipped exporting HTTP/REST API."
            )
            self.enable_rest = False
        self.model_config = initial_model_config(options)
        self.batching = (
            BatchingOptions.from_proto(read_batching_parameters(options.batching_parameters_file))
            if options.enable_batching and options.batching_parameters_file
            else (BatchingOptions() if options.enable_batching else None)
        )
        monitoring = (
            read_monitoring_config(options.monitoring_config_file) if options.monitoring_config_file else None
        )
        self.prometheus_path = prometheus_path(monitoring)
        self.manager: ModelManager | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc_server: Any = None
        self._rest_server: Any = None
        self._profiler: Any = None

    def start(self) -> ModelServer:
        """Load models, then serve; on any failure everything started so far is stopped."""
        from serving.model_server.grpc_service import create_grpc_server
        from serving.model_server.metrics import Metrics

        options = self.options
        if options.enable_profiler:
            from serving.model_server.profiler import ProfilerForwarder

            self._profiler = ProfilerForwarder()
            if not self._profiler.start():
                log.warning("TensorFlow's profiler server did not start; ProfilerService calls will retry it")
        cpu = python_threads_cpu(options.pin_python_threads)
        pin = thread_pinner(cpu)
        runner = BudgetedRunner(
            Batcher(self.batching, pin) if self.batching is not None else DirectRunner(),
            options.max_request_tensor_bytes,
        )
        session_config = options.session_config()
        self.manager = ModelManager(
            self.model_config,
            runner=runner,
            enable_warmup=options.enable_model_warmup,
            warmup_iterations=options.num_request_iterations_for_warmup,
            poll_wait_seconds=options.file_system_poll_wait_seconds,
            retry_policy=RetryPolicy(options.max_num_load_retries, options.load_retry_interval_micros),
            num_load_threads=options.num_load_threads,
            check_method_name=options.enable_signature_method_name_check,
            allow_labels_for_unavailable=options.allow_version_labels_for_unavailable_models,
            session_config=session_config,
            servable_factory=functools.partial(
                load_servable,
                prefer_tflite=options.prefer_tflite_model,
                saved_model_tags=options.saved_model_tag_set,
                check_method_name=options.enable_signature_method_name_check,
                session_config=session_config,
                num_tflite_pools=options.num_tflite_pools,
            ),
            load_context=unpinned_loads(cpu),
            max_request_tensor_bytes=options.max_request_tensor_bytes,
            reload_roots=reload_roots(self.model_config, options.model_config_root_list),
        )
        try:
            self.manager.start()
            if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
                path = options.model_config_file
                self.manager.watch_config_file(
                    lambda: read_model_server_config(path), options.model_config_file_poll_wait_seconds
                )
            # Nothing can read request metrics without a monitoring config: do not record them.
            metrics = Metrics() if self.prometheus_path is not None else None
            self._grpc_server, self.grpc_port = create_grpc_server(
                self.manager,
                bind_address=options.bind_address,
                port=options.port,
                metrics=metrics,
                channel_arguments=options.grpc_channel_arguments,
                max_workers=options.grpc_max_threads,
                batching=self.batching is not None,
                thread_init=pin,
                socket_path=options.grpc_socket_path,
                tcp=self.serve_tcp,
                face=options.grpc_face,
                extra_handlers=(self._profiler,) if self._profiler is not None else (),
            )
            self._grpc_server.start()
            if self.serve_tcp:
                log.info("Running gRPC ModelServer at %s:%d ...", options.bind_address, self.grpc_port)
            if options.grpc_socket_path:
                log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)
            if self.enable_rest:
                from serving.model_server.rest_server import RestServer

                self._rest_server = RestServer(
                    self.manager,
                    bind_address=options.bind_address,
                    port=options.rest_api_port,
                    metrics=metrics,
                    prometheus_path=self.prometheus_path,
                    timeout_ms=options.rest_api_timeout_in_ms,
                    num_threads=options.rest_api_num_threads,
                    enable_cors=options.rest_api_enable_cors_support,
                    thread_init=pin,
                )
                self.rest_port = self._rest_server.start()
                log.info("Exporting HTTP/REST API at:%s:%d ...", options.bind_address, self.rest_port)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the faces (no new requests), then the batcher, then unload the models.

        Each step waits at most ``timeout`` seconds: in-flight gRPC calls get one second of
        grace, then are cancelled.
        """
        if self._rest_server is not None:
            self._rest_server.stop()
            self._rest_server = None
        if self._grpc_server is not None:
            if not self._grpc_server.stop(grace=1.0).wait(timeout):
                log.warning("gRPC server did not stop within %.0f s", timeout)
            self._grpc_server = None
        if self.manager is not None:
            self.manager.stop(timeout)
            self.manager = None
        if self._profiler is not None:
            self._profiler.close()
            self._profiler = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

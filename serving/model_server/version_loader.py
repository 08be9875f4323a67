"""Loading one servable version: build, warm up, retry (LoaderHarness::Load)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from serving.model_server.load_retry import RetryPolicy, retry
from serving.model_server.servable import Servable
from serving.model_server.warmup import replay_warmup


class VersionLoader:
    """Builds a servable from its version directory, replays its warmup, retries on failure.

    Args:
        factory: (name, version, path) -> servable (a SavedModel or TF Lite servable).
        warmup_iterations: times each warmup record is replayed; 0 skips warmup.
        load_context: wraps each attempt (``affinity.unpinned_loads``).
        retry_policy: ``--max_num_load_retries`` and ``--load_retry_interval_micros``.
    """

    def __init__(
        self,
        factory: Callable[[str, int, Path], Servable],
        *,
        warmup_iterations: int,
        load_context: Callable[[], AbstractContextManager[Any]],
        retry_policy: RetryPolicy,
    ) -> None:
        self.factory = factory
        self.warmup_iterations = warmup_iterations
        self.load_context = load_context
        self.retry_policy = retry_policy

    def load(
        self,
        name: str,
        version: int,
        path: Path,
        *,
        should_retry: Callable[[], bool],
        sleep: Callable[[float], object],
    ) -> Servable:
        """One version, ready to serve.

        Raises:
            The last attempt's error (a ServingError from the servable, or what TensorFlow
            raised) once the retries are exhausted or ``should_retry`` cancelled them.
        """

        def attempt() -> Servable:
            with self.load_context():
                servable = self.factory(name, version, path)
                if self.warmup_iterations:
                    try:
                        replay_warmup(servable, self.warmup_iterations)
                    except BaseException:
                        servable.close()
                        raise
                return servable

        return retry(
            f"Loading servable: {{name: {name} version: {version}}}",
            self.retry_policy,
            attempt,
            should_retry=should_retry,
            sleep=sleep,
        )

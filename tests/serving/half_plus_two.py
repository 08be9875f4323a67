"""Options for a model server on TF Serving's half_plus_two test model, shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.model_server.config import ServerOptions


def half_plus_two_options(testdata: Path, **overrides: Any) -> ServerOptions:
    """Options serving TF Serving's half_plus_two test model on free loopback ports, no polling."""
    settings: dict[str, Any] = {
        "port": 0,
        "rest_api_port": 0,
        "model_name": "half_plus_two",
        "model_base_path": str(testdata / "saved_model_half_plus_two_cpu"),
        "file_system_poll_wait_seconds": 0,
        "enable_profiler": False,
    }
    settings.update(overrides)
    return ServerOptions(**settings)

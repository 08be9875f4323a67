"""``--model_config_file_poll_wait_seconds``: re-read the model config file and apply changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from serving.model_server.errors import ServingError

log = logging.getLogger(__name__)


def watch_config(
    read_config: Callable[[], Any],
    apply: Callable[[Any], None],
    poll_wait_seconds: float,
    stop: threading.Event,
) -> None:
    """Until ``stop``: every ``poll_wait_seconds`` read the config and apply it when it changed.

    A file that does not read or parse is logged and the current config stays; a config the
    manager refuses is logged and retried at the next change (Server::PollFilesystemAndReloadConfig
    logs and keeps serving). An empty config is the manager's "no action".
    """
    last = None
    while not stop.wait(poll_wait_seconds):
        try:
            config = read_config()
        except Exception as exc:
            log.error("Failed to read model config file: %s", exc)
            continue
        serialized = config.SerializeToString(deterministic=True)
        if serialized == last:
            continue
        try:
            apply(config)
            last = serialized
        except ServingError as exc:
            log.error("Failed to reload model config: %s", exc.message)

"""Retrying a failed servable load as TF Serving's LoaderHarness does (util/retrier.cc)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``--max_num_load_retries`` and ``--load_retry_interval_micros``.

    TF Serving's defaults are 5 retries a minute apart: a version directory that was still
    being copied when first seen loads on a later attempt. 0 retries means one attempt; a
    negative interval retries at once.
    """

    max_num_retries: int = 5
    retry_interval_micros: int = 60_000_000

    @property
    def interval_seconds(self) -> float:
        return max(0, self.retry_interval_micros) / 1e6


def retry(
    description: str,
    policy: RetryPolicy,
    attempt: Callable[[], T],
    *,
    should_retry: Callable[[], bool],
    sleep: Callable[[float], object],
) -> T:
    """Run ``attempt`` until it returns, at most ``1 + policy.max_num_retries`` times.

    Args:
        description: what is retried, for the log ("Loading servable: {name: m version: 1}").
        policy: how often and how far apart.
        attempt: the load; its exception is a failed try.
        should_retry: asked before each retry; False cancels (the version is no longer
            aspired, or the server stops), as BasicManager::CancelLoadServableRetry does.
        sleep: waits between tries (an Event.wait, so that stopping interrupts it).

    Raises:
        The last attempt's exception once the retries are exhausted or cancelled.
    """
    tries = 0
    while True:
        try:
            return attempt()
        except Exception as exc:
            log.error("%s failed: %s", description, getattr(exc, "message", None) or exc)
            tries += 1
            if tries > policy.max_num_retries:
                if policy.max_num_retries:
                    log.info("Retrying of %s exhausted max_num_retries: %d", description, policy.max_num_retries)
                raise
            sleep(policy.interval_seconds)
            if not should_retry():
                log.info("Retrying of %s was cancelled.", description)
                raise
            log.info("Retrying of %s retry: %d", description, tries)

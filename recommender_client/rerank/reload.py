"""Hot reload of the rules file: poll its stat at most every few seconds, keep the last good rules."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from recommender_client.excerpt import clip
from recommender_client.rerank.rules import RulesError, RuleSet, load_rules

log = logging.getLogger(__name__)


class RuleBook:
    """The current rules of one YAML file, reloaded when the file changes, without a restart.

    :meth:`current` looks at the file's ``(mtime_ns, size, inode)`` at most once every
    ``min_interval_s``; when that changed it re-parses. An invalid or missing file keeps the
    previous rules, counts it in ``failures``, logs why once and is not retried until it
    changes again; no failure of the file ever reaches the caller. The first load must succeed
    (a service must not start with rules it cannot read).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError(f"RuleBook: min_interval_s must be >= 0, got {min_interval_s}")
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._signature = self._stat()
        self._rules = load_rules(self.path)
        self._checked_at = clock()
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> RuleSet:
        """The rules in force, reloading first if the file changed and the interval has passed."""
        now = self._clock()
        if now - self._checked_at < self.min_interval_s:
            return self._rules
        with self._lock:
            if now - self._checked_at < self.min_interval_s:
                return self._rules
            self._checked_at = now
            signature = self._stat()
            if signature == self._signature:
                return self._rules
            self._signature = signature
            try:
                rules = load_rules(self.path)
            except Exception as exc:
                # Any failure, even one load_rules does not foresee, keeps the rules in force:
                # this runs inside a request, which must not fail because of the file.
                problem = (
                    str(exc) if isinstance(exc, RulesError) else f"{type(exc).__name__}: {clip(str(exc))}"
                )
                self.failures += 1
                self.last_error = problem
                log.warning("rules reload failed, keeping rules %s: %s", self._rules.digest, problem)
                return self._rules
            self._rules = rules
            self.reloads += 1
            self.last_error = None
            log.info(
                "rules reloaded from %s: version %s, %d rules", self.path, rules.digest, len(rules.rules)
            )
            return rules

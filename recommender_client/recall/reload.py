"""Artefact reload without a restart: poll the manifest, load a changed set fully, then swap it in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from recommender_client.excerpt import clip
from recommender_client.recall.artifacts import MANIFEST, ArtifactError, RecallArtifacts, load_artifacts

log = logging.getLogger(__name__)

Signature = tuple[int, int, int] | None


class ArtifactWatch:
    """Reloads an artefact directory when its manifest changes, as TF Serving polls its model base path.

    Every ``poll_interval_s`` the manifest's ``(mtime_ns, size, inode)`` is compared with the
    set in force (through symlinks, so repointing ``artifacts_dir`` at a new directory counts
    as a change too). A changed manifest means a new set: ``save_artifacts`` writes it last
    and lists every file's size and SHA-256, so a set still being written fails the load
    instead of mixing two. The new set is loaded and ``swap`` builds everything from it in a
    worker thread; only then does it replace the set in force, in one assignment. A set that
    fails (unreadable, inconsistent, or not fitting the contract) keeps the old one, counts in
    ``failures``, is logged once and is not tried again until the manifest changes again.

    Args:
        directory: the artefact directory (``RANKER_ARTIFACTS_DIR``).
        swap: puts a loaded set in force (``Recommender.swap_artifacts`` with its fallback);
            raises to refuse it.
        poll_interval_s: seconds between checks (``RANKER_ARTIFACTS_POLL_INTERVAL_S``); 0: never.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        swap: Callable[[RecallArtifacts], None],
        poll_interval_s: float,
    ) -> None:
        if poll_interval_s < 0:
            raise ValueError(f"ArtifactWatch: poll_interval_s must be >= 0, got {poll_interval_s}")
        self.directory = Path(directory)
        self.poll_interval_s = poll_interval_s
        self._swap = swap
        self._signature: Signature = None
        self._task: asyncio.Task[None] | None = None
        self._checking = asyncio.Lock()  # the poll and a caller's check() never load at once
        self.reloads = 0
        self.failures = 0
        self.last_error: str | None = None

    def signature(self) -> Signature:
        """The manifest's ``(mtime_ns, size, inode)``, or None while it cannot be read."""
        try:
            st = (self.directory / MANIFEST).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> RecallArtifacts:
        """The first load (at start-up, where a failure must stop the service): remembers the
        manifest it came from, taken before reading, so a set written meanwhile is reloaded."""
        signature = self.signature()
        artifacts = load_artifacts(self.directory)
        self._signature = signature
        return artifacts

    def _load_and_swap(self) -> None:
        self._swap(load_artifacts(self.directory))

    async def check(self) -> bool:
        """Reload if the manifest changed since the set in force; True when a new set is in force."""
        async with self._checking:
            return await self._check()

    async def _check(self) -> bool:
        signature = self.signature()
        if signature == self._signature:
            return False
        try:
            await asyncio.to_thread(self._load_and_swap)
        except Exception as exc:
            # anything, even a failure load_artifacts does not foresee, keeps the set in force
            problem = (
                str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {clip(str(exc))}"
            )
            self._signature = signature  # not retried until the manifest changes again
            self.failures += 1
            self.last_error = problem
            log.warning(
                "artefact reload from %s failed, keeping the set in force: %s", self.directory, problem
            )
            return False
        self._signature = signature
        self.reloads += 1
        self.last_error = None
        log.info("artefacts reloaded from %s (reload %d)", self.directory, self.reloads)
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            await self.check()

    def start(self) -> None:
        """Poll on the running event loop until :meth:`stop` (nothing with an interval of 0)."""
        if self.poll_interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="artifact-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""One configured model: its config entry, the versions serving now, its labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.model_server.servable import Servable


class ServedModel:
    """Mutable per-model state; the manager changes it under its lock.

    ``latest`` (the highest available version) may be read without the lock: the request path
    asks for it on every call, and taking the lock was ~4% of the batching face's loop time.
    Only ``add``/``remove``/``clear`` change the servables, so it can never go stale.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self._servables: dict[int, Servable] = {}
        self.latest: Servable | None = None
        self.labels: dict[str, int] = {}
        # Versions whose load failed for good (after the retries): not loaded again while
        # they stay on disk, as AspiredVersionsManager keeps an errored harness until the
        # version stops being aspired.
        self.failed: set[int] = set()

    @property
    def servables(self) -> Mapping[int, Servable]:
        """Available versions (read-only: change them with add/remove/clear)."""
        return self._servables

    def add(self, version: int, servable: Servable) -> None:
        self._servables[version] = servable
        self._refresh()

    def remove(self, version: int) -> Servable:
        servable = self._servables.pop(version)
        self._refresh()
        return servable

    def clear(self) -> list[Servable]:
        servables = list(self._servables.values())
        self._servables.clear()
        self._refresh()
        return servables

    def _refresh(self) -> None:
        self.latest = self._servables[max(self._servables)] if self._servables else None

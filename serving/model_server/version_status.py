"""A servable version's state as GetModelStatus reports it (ServableState's manager states)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass(frozen=True)
class VersionStatus:
    """One version's state.

    Attributes:
        version: the version number.
        state: START, LOADING, AVAILABLE, UNLOADING or END (ModelVersionStatus.State names).
        error_code: OK, or the code of the failure that ended the version.
        error_message: empty, or the failure's message.
    """

    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""

    @property
    def settled(self) -> bool:
        """Whether the version stopped changing on its own: AVAILABLE, or END after a failure."""
        return self.state == AVAILABLE or (self.state == END and self.error_code != grpc.StatusCode.OK)

    def health(self) -> str:
        """The error as absl::Status::ToString prints it ("CODE: message"), '' when OK."""
        if self.error_code == grpc.StatusCode.OK:
            return ""
        return f"{self.error_code.name}: {self.error_message}"

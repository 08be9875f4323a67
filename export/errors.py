"""The export package's error types: one base class so the CLI can turn any of them into exit code 1."""

from __future__ import annotations


class ExportError(RuntimeError):
    """Exporting, verifying or publishing a model failed; the message says what and where."""


class VersionExistsError(ExportError):
    """The target version directory already exists; published versions are never overwritten."""


class ContractMismatchError(ExportError):
    """A model, a signature or a batch does not match the feature contract."""


class VerificationError(ExportError):
    """A written SavedModel failed verification (the report lists every failed check)."""

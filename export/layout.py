"""TF Serving's directory layout: integer versions under ``<base>/<name>/`` and atomic publication.

TF Serving polls ``<base>/<name>/`` and loads every child whose name parses as an integer. A
version must therefore appear in one step, complete: it is written into a hidden temporary
directory beside the target (same filesystem), flushed to disk, then renamed. Temporary and
record names always start with a non-digit so no server ever mistakes them for a version.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from export.errors import ExportError, VersionExistsError
from training.atomic_files import atomic_write_text, fsync_path

TEMP_PREFIX = ".tmp-"
LOCK_FILENAME = ".export.lock"
_VERSION_RE = re.compile(r"^[0-9]+$")


def parse_version(value: str | int) -> int:
    """A positive integer version from a CLI string or an int; anything else is an error.

    Raises:
        ExportError: ``value`` is not a positive whole number (e.g. ``"v2"``, ``"1.5"``, ``"0"``).
    """
    text = str(value).strip()
    if isinstance(value, bool) or not _VERSION_RE.match(text) or int(text) < 1:
        raise ExportError(
            f"model version must be a positive integer (TF Serving loads only numeric version "
            f"directories), got {value!r}"
        )
    return int(text)


def list_versions(model_dir: Path) -> list[int]:
    """Published versions in ``model_dir`` (numeric child directories), ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if _VERSION_RE.match(p.name) and p.is_dir())


def latest_version(model_dir: Path) -> int | None:
    """The highest published version, or None when there is none (TF Serving's default policy)."""
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def next_version(model_dir: Path) -> int:
    """One more than the latest version (1 for an empty model directory)."""
    latest = latest_version(model_dir)
    return 1 if latest is None else latest + 1


def prepare_model_dir(base_path: Path, model_name: str) -> Path:
    """Create ``<base>/<name>`` and prove it is writable, before any expensive work starts.

    Raises:
        ExportError: the name is not a plain directory name, or the base path cannot be written.
    """
    if not model_name or model_name in (".", "..") or "/" in model_name or os.sep in model_name:
        raise ExportError(f"model name must be a plain directory name, got {model_name!r}")
    model_dir = Path(base_path) / model_name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        probe = model_dir / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise ExportError(
            f"base path {base_path} is not writable ({model_dir}): {exc.strerror or exc}"
        ) from exc
    return model_dir


def make_staging_dir(model_dir: Path, version: int) -> Path:
    """A fresh hidden directory beside the target version: ``.tmp-<version>-<random>``."""
    path = model_dir / f"{TEMP_PREFIX}{version}-{secrets.token_hex(6)}"
    try:
        path.mkdir()
    except OSError as exc:
        raise ExportError(f"cannot create a staging directory in {model_dir}: {exc.strerror or exc}") from exc
    return path


def clean_stale_staging(model_dir: Path) -> list[Path]:
    """Remove temporary directories left by crashed exports; returns what was removed.

    Only ``.tmp-*`` entries are touched. Call it before starting a new export (one exporter per
    model directory at a time is assumed, as with any TF Serving base path).
    """
    removed = []
    if not model_dir.is_dir():
        return removed
    for entry in model_dir.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk, so a rename publishes durable bytes."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_path(Path(dirpath, name))
        fsync_path(Path(dirpath))


def publish_staging(staging: Path, model_dir: Path, version: int) -> Path:
    """Flush ``staging`` and rename it to ``<model_dir>/<version>`` in one atomic step.

    Raises:
        VersionExistsError: the version already exists (it is never overwritten).
    """
    target = model_dir / str(version)
    if target.exists():
        raise VersionExistsError(f"version {version} already exists at {target}; refusing to overwrite it")
    fsync_tree(staging)
    try:
        # rename(2) would silently replace an *empty* directory that appeared since the check;
        # os.rename onto a non-empty one fails, which is what we want.
        os.rename(staging, target)
    except OSError as exc:
        raise ExportError(f"cannot publish {staging} as {target}: {exc.strerror or exc}") from exc
    fsync_path(model_dir)
    return target


def write_text_atomic(path: Path, text: str) -> Path:
    """``atomic_write_text`` (hidden temporary file, rename, mode 0644) raising ``ExportError``."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def remove_tree(path: Path) -> None:
    """Best-effort removal of a staging directory after a failure."""
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def staged_version(base_path: Path, model_name: str, version: int | str | None) -> Iterator[Staged]:
    """Reserve a version and a staging directory; the staging directory is removed on any error.

    The caller writes into ``staged.path`` and calls ``publish_staging`` when (and only when)
    the version should go live; leaving the block without publishing removes the staging dir.
    """
    number = None if version is None else parse_version(version)
    model_dir = prepare_model_dir(Path(base_path), model_name)
    with _export_lock(model_dir):
        clean_stale_staging(model_dir)
        number = next_version(model_dir) if number is None else number
        target = model_dir / str(number)
        if target.exists():
            raise VersionExistsError(f"version {number} already exists at {target}; refusing to overwrite it")
        staged = Staged(model_dir=model_dir, version=number, path=make_staging_dir(model_dir, number))
        try:
            yield staged
        finally:
            if staged.path.exists():
                remove_tree(staged.path)


@contextmanager
def _export_lock(model_dir: Path) -> Iterator[None]:
    """One exporter per model directory: version numbering and stale-staging cleanup rely on it.

    ``flock`` is released by the kernel when the holder dies, so a killed export never blocks
    the next one.
    """
    path = model_dir / LOCK_FILENAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ExportError(f"cannot open lock file {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ExportError(f"another export into {model_dir} is running (lock {path} is held)") from exc
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Staged:
    """A reserved version: where it is written (``path``) and where it will be published."""

    model_dir: Path
    version: int
    path: Path

    @property
    def target(self) -> Path:
        return self.model_dir / str(self.version)

    def publish(self) -> Path:
        """Atomically rename the staging directory to the version directory."""
        return publish_staging(self.path, self.model_dir, self.version)

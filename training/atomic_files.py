"""Atomic file writes: readers see the old file or the new one whole, never a part, even after a crash.

The one writer for every artefact the stack leaves on disk (contracts, reports, checkpoints,
recall artefacts, the console's rules file and history). It lives apart from the feature
contract because it is a different concept, and stays free of heavy imports: the
TensorFlow-free ranker image copies it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def atomic_write_text(path: Path, text: str, *, mode: int | None = 0o644) -> None:
    """Write ``text`` as UTF-8 through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = 0o644) -> None:
    """Replace ``path`` by ``data``: readers see the old file or the new one, never a part.

    The one writer for training artifacts and the console's rules file alike (see :func:`atomic_path`).
    """
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_path(path: Path, *, mode: int | None = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, else removed.

    For writers that need a file name (parquet, npz, PNG, ONNX). Before the rename the file's
    bytes are flushed to disk, and after it the folder, so a crash leaves the old file or the
    new one whole, not an empty name (ext4 may commit a rename before the data it points at).
    ``mode``: the new file's permission bits; 0644 by default, since mkstemp's 0600 would hide
    it from servers running as another user (the non-root containers); None keeps those of the
    file replaced (an operator's own rules file), 0644 when there is none.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries (a rename in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

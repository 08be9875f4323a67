"""training.atomic_files: whole-or-nothing writes, their permission bits, and the fsyncs that make them so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.atomic_files import atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_whole_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n" and target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    atomic_write_bytes(target, b"two\n", mode=None)  # keeps the replaced file's bits
    assert target.read_bytes() == b"two\n" and target.stat().st_mode & 0o777 == 0o600
    atomic_write_bytes(target, b"three\n", mode=0o640)
    assert target.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "fresh.yaml"
    atomic_write_bytes(fresh, b"x", mode=None)  # nothing to keep: world-readable
    assert fresh.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]  # no temporary left


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half written"), atomic_path(target) as tmp:
        tmp.write_bytes(b"ne")
        raise RuntimeError("half written")
    assert target.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_write_syncs_the_file_and_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new file's bytes and the folder's rename both reach the disk (the real fsync, recorded)."""
    synced: list[int] = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    target = tmp_path / "rules.yaml"
    atomic_write_text(target, "rules: []\n")
    assert synced == [target.stat().st_ino, tmp_path.stat().st_ino]  # file first, then the folder

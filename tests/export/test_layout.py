"""Version numbering, staging directories and atomic publication (no TensorFlow needed)."""

from __future__ import annotations

import os

import pytest

from export.errors import ExportError, VersionExistsError
from export.layout import (
    LOCK_FILENAME,
    TEMP_PREFIX,
    clean_stale_staging,
    latest_version,
    list_versions,
    next_version,
    parse_version,
    prepare_model_dir,
    staged_version,
    write_text_atomic,
)

from .conftest import entries


@pytest.mark.parametrize("value, expected", [("1", 1), (7, 7), ("0042", 42), (" 3 ", 3)])
def test_parse_version_accepts_positive_integers(value, expected):
    assert parse_version(value) == expected


@pytest.mark.parametrize("value", ["v2", "1.5", "0", "-3", "", "abc", True, "1e3"])
def test_parse_version_rejects_everything_else(value):
    with pytest.raises(ExportError, match="model version must be a positive integer"):
        parse_version(value)


def test_versions_ignore_temporary_and_record_names(tmp_path):
    model_dir = tmp_path / "ctr"
    for name in ("1", "3", "10", f"{TEMP_PREFIX}11-abc", "3.blessing.json.d", "v4", "007x"):
        (model_dir / name).mkdir(parents=True)
    (model_dir / "12").write_text("a file, not a version")
    assert list_versions(model_dir) == [1, 3, 10]
    assert latest_version(model_dir) == 10
    assert next_version(model_dir) == 11
    assert next_version(tmp_path / "absent") == 1
    assert latest_version(tmp_path / "absent") is None


def test_staged_version_publishes_atomically_and_refuses_overwrite(tmp_path):
    with staged_version(tmp_path, "ctr", None) as staged:
        assert staged.version == 1
        assert staged.path.name.startswith(f"{TEMP_PREFIX}1-")
        (staged.path / "saved_model.pb").write_bytes(b"x")
        assert not staged.target.exists()  # nothing visible before publish
        target = staged.publish()
    assert target == tmp_path / "ctr" / "1" and (target / "saved_model.pb").read_bytes() == b"x"
    assert entries(tmp_path / "ctr") == ["1"]

    with pytest.raises(VersionExistsError, match="version 1 already exists"):
        with staged_version(tmp_path, "ctr", "1"):
            pass
    assert entries(tmp_path / "ctr") == ["1"]


def test_staged_version_cleans_up_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with staged_version(tmp_path, "ctr", 5) as staged:
            (staged.path / "partial").write_text("half")
            raise RuntimeError("boom")
    assert entries(tmp_path / "ctr") == []


def test_stale_staging_is_removed_by_the_next_export(tmp_path):
    model_dir = tmp_path / "ctr"
    stale = model_dir / f"{TEMP_PREFIX}2-deadbeef"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half")
    (model_dir / "1").mkdir()
    removed = clean_stale_staging(model_dir)
    assert removed == [stale] and not stale.exists() and (model_dir / "1").is_dir()


def test_unwritable_base_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the base path should be")
    with pytest.raises(ExportError, match="is not writable"):
        prepare_model_dir(blocker, "ctr")
    assert blocker.read_text() == "a file where the base path should be"


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_model_name_must_be_plain(tmp_path, name):
    with pytest.raises(ExportError, match="plain directory name"):
        prepare_model_dir(tmp_path, name)


def test_write_text_atomic_is_world_readable(tmp_path):
    path = write_text_atomic(tmp_path / "1.blessing.json", "{}\n")
    assert path.read_text() == "{}\n"
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["1.blessing.json"]


def test_concurrent_export_into_the_same_model_is_refused(tmp_path):
    import fcntl

    model_dir = prepare_model_dir(tmp_path, "ctr")
    with open(model_dir / LOCK_FILENAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        stale = model_dir / f"{TEMP_PREFIX}1-other-exporter"
        stale.mkdir()
        with pytest.raises(ExportError, match="another export into .* is running"):
            with staged_version(tmp_path, "ctr", None):
                pass
        assert stale.is_dir()  # the running exporter's staging directory was not touched
    with staged_version(tmp_path, "ctr", None) as staged:  # lock released: works, cleans up
        assert staged.version == 1 and not stale.exists()

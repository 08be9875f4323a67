"""ModelManager: version policies, labels, swaps without gaps, failed versions, config reloads."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from serving.model_server.config import parse_model_server_config  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.manager import ModelManager, aspired_versions, list_versions  # noqa: E402

X = np.array([1.0, 2.0, 5.0], np.float32)


def _config(*models: tuple[str, Path, str]) -> object:
    body = "".join(
        f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" {extra} }}'
        for name, path, extra in models
    )
    return parse_model_server_config(f"model_config_list {{ {body} }}")


@pytest.fixture()
def two_versions(tfserving_testdata: Path, tmp_path: Path) -> Path:
    base = tmp_path / "hp2"
    shutil.copytree(tfserving_testdata / "saved_model_half_plus_two_2_versions", base)
    return base


def test_list_versions_reads_names_as_absl_simple_atoi(tmp_path: Path) -> None:
    # FileSystemStoragePathSource: ParseVersionNumber = absl::SimpleAtoi on each child name,
    # file or directory. Non-ASCII digits ('\u0663' is Arabic-Indic 3, '\u00b2' superscript 2)
    # are not numbers to it; '\u00b2'.isdigit() is True but int() raises, which stopped the poll.
    for name in ("00000123", "7", "tmp-8", "abc", "\u0663", "\u00b2", "+5", "1e3"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file named like a version is a version to TF Serving")
    assert list_versions(tmp_path) == [5, 7, 9, 123]
    assert list_versions(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", {124}),
        ("model_version_policy { latest { num_versions: 2 } }", {123, 124}),
        ("model_version_policy { all {} }", {123, 124}),
        ("model_version_policy { specific { versions: 123 versions: 999 } }", {123}),
    ],
)
def test_version_policies(two_versions: Path, policy: str, expected: set[int]) -> None:
    config = _config(("hp2", two_versions, policy))
    assert aspired_versions(config.model_config_list.config[0], [123, 124]) == expected
    manager = ModelManager(config, poll_wait_seconds=0)
    manager.start()
    try:
        assert manager.available_versions("hp2") == sorted(expected)
        assert [s.version for s in manager.status("hp2")] == sorted(expected, reverse=True)
        assert all(s.state == "AVAILABLE" for s in manager.status("hp2"))
        assert manager.get_servable("hp2").version == max(expected)
        out = manager.runner.run(manager.get_servable("hp2", version=min(expected)), "", {"x": X})
        np.testing.assert_array_equal(out["y"], 0.5 * X + 2)
    finally:
        manager.stop()


def test_labels_and_lookup_errors(two_versions: Path) -> None:
    labels = 'version_labels { key: "stable" value: 123 } version_labels { key: "canary" value: 124 }'
    manager = ModelManager(
        _config(("hp2", two_versions, "model_version_policy { all {} }")), poll_wait_seconds=0
    )
    manager.start()
    try:
        manager.reload_config(_config(("hp2", two_versions, f"model_version_policy {{ all {{}} }} {labels}")))
        assert manager.get_servable("hp2", label="stable").version == 123
        assert manager.get_servable("hp2", label="canary").version == 124
        assert manager.version_labels("hp2") == {"stable": 123, "canary": 124}
        with pytest.raises(ServingError, match="^Unrecognized servable version label: beta$") as info:
            manager.get_servable("hp2", label="beta")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        # ServableRequestFromModelSpec: a set-but-empty label is looked up like any other.
        with pytest.raises(ServingError, match="^Unrecognized servable version label: $"):
            manager.get_servable("hp2", label="")
        with pytest.raises(ServingError, match=r"^ModelSpec has no name specified\.$") as info:
            manager.get_servable("")
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(
            ServingError, match=r"^Servable not found for request: Specific\(hp2, 7\)$"
        ) as info:
            manager.get_servable("hp2", version=7)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(ServingError, match=r"^Servable not found for request: Latest\(other\)$"):
            manager.get_servable("other")
        with pytest.raises(ServingError, match="^Could not find any versions of model other$"):
            manager.status("other")
        with pytest.raises(ServingError, match="^Could not find version 7 of model hp2$"):
            manager.status("hp2", 7)
        # A label may only point at an available version.
        bad = _config(
            ("hp2", two_versions, 'model_version_policy { all {} } version_labels { key: "x" value: 9 }')
        )
        with pytest.raises(ServingError, match="Request to assign label to version 9 of model hp2") as info:
            manager.reload_config(bad)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        manager.stop()


def test_labels_are_checked_before_loading(two_versions: Path) -> None:
    """ServerCore::ReloadConfig runs UpdateModelVersionLabelMap before adding models."""
    labelled = _config(("hp2", two_versions, 'version_labels { key: "stable" value: 124 }'))
    with pytest.raises(
        ServingError,
        match=r"^Request to assign label to version 124 of model hp2, which is not currently available "
        r"for inference$",
    ) as info:
        ModelManager(labelled, poll_wait_seconds=0).start()
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    manager = ModelManager(labelled, poll_wait_seconds=0, allow_labels_for_unavailable=True)
    manager.start()
    try:
        assert manager.get_servable("hp2", label="stable").version == 124
        # With the flag, only a new label (or one already there) may name an unavailable version:
        # moving "stable" from 124 to 999 is refused, adding "next" at 999 is not.
        moved = _config(("hp2", two_versions, 'version_labels { key: "stable" value: 999 }'))
        with pytest.raises(
            ServingError, match="to version 999 of model hp2, which is not currently available"
        ):
            manager.reload_config(moved)
        extra = 'version_labels { key: "stable" value: 124 } version_labels { key: "next" value: 999 }'
        manager.reload_config(_config(("hp2", two_versions, extra)))
        assert manager.version_labels("hp2") == {"stable": 124, "next": 999}
        with pytest.raises(ServingError, match=r"^Servable not found for request: Specific\(hp2, 999\)$"):
            manager.get_servable("hp2", label="next")
    finally:
        manager.stop()


def test_empty_config_never_unloads(two_versions: Path) -> None:
    """ServerCore::ReloadConfig: an empty first config is "no action"; after a ModelConfigList,
    an empty one is an illegal transition, so a truncated config file unloads nothing."""
    manager = ModelManager(parse_model_server_config(""), poll_wait_seconds=0)
    manager.start()
    try:
        assert manager.model_names() == []
        manager.reload_config(_config(("hp2", two_versions, "")))
        with pytest.raises(ServingError, match="^Cannot transition to requested config") as info:
            manager.reload_config(parse_model_server_config(""))
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert manager.available_versions("hp2") == [124]
    finally:
        manager.stop()


def test_new_version_swaps_in_without_failed_requests(tfserving_testdata: Path, tmp_path: Path) -> None:
    base = tmp_path / "hp2"
    source = tfserving_testdata / "saved_model_half_plus_two_2_versions"
    shutil.copytree(source / "00000123", base / "123")
    manager = ModelManager(_config(("hp2", base, "")), poll_wait_seconds=0)
    manager.start()
    errors: list[BaseException] = []
    served: set[int] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                servable = manager.get_servable("hp2")
                np.testing.assert_array_equal(manager.runner.run(servable, "", {"x": X})["y"], 0.5 * X + 2)
                served.add(servable.version)
            except BaseException as exc:  # any failure during the swap is the bug under test
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        shutil.copytree(source / "00000124", base / "124")
        assert manager.poll_once() == []
        time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        assert errors == []
        assert served == {123, 124}
        states = {s.version: s.state for s in manager.status("hp2")}
        assert states == {124: "AVAILABLE", 123: "END"}
        assert manager.get_servable("hp2").version == 124
    finally:
        manager.stop()


def test_failed_version_is_reported_and_never_replaces_serving_one(
    two_versions: Path, tfserving_testdata: Path
) -> None:
    manager = ModelManager(_config(("hp2", two_versions, "")), poll_wait_seconds=0)
    manager.start()
    try:
        shutil.copytree(tfserving_testdata / "bad_half_plus_two" / "00000123", two_versions / "125")
        failures = manager.poll_once()
        assert [(name, version) for name, version, _ in failures] == [("hp2", 125)]
        status = manager.status("hp2")
        assert [(s.version, s.state) for s in status] == [(125, "END"), (124, "AVAILABLE")]
        assert status[0].error_code == grpc.StatusCode.NOT_FOUND
        assert "Could not find SavedModel .pb or .pbtxt" in status[0].error_message
        assert manager.get_servable("hp2").version == 124
        assert manager.poll_once() == []  # a failed version is not retried while it stays on disk
    finally:
        manager.stop()


def test_start_fails_naming_the_unavailable_servable(tfserving_testdata: Path) -> None:
    config = _config(("bad", tfserving_testdata / "bad_half_plus_two", ""))
    manager = ModelManager(config, poll_wait_seconds=0)
    with pytest.raises(
        ServingError,
        match=r"^1 model\(s\) did not become available: \{\{\{name: bad version: 123\} due to error: "
        r"NOT_FOUND: Could not find SavedModel",
    ) as info:
        manager.start()
    assert info.value.code == grpc.StatusCode.UNKNOWN
    manager.stop()


def test_reload_config_adds_and_removes_models(two_versions: Path, tfserving_testdata: Path) -> None:
    three = tfserving_testdata / "saved_model_half_plus_three"
    manager = ModelManager(_config(("hp2", two_versions, "")), poll_wait_seconds=0)
    manager.start()
    try:
        manager.reload_config(_config(("hp2", two_versions, ""), ("hp3", three, "")))
        assert manager.model_names() == ["hp2", "hp3"]
        np.testing.assert_array_equal(manager.get_servable("hp3").run("", {"x": X})["y"], 0.5 * X + 3)
        manager.reload_config(_config(("hp3", three, "")))
        assert manager.model_names() == ["hp3"]
        with pytest.raises(ServingError, match=r"Latest\(hp2\)"):
            manager.get_servable("hp2")
        assert [s.state for s in manager.status("hp2")] == ["END"]
        with pytest.raises(ServingError, match="^Illegal to list model hp3 multiple times in config list$"):
            manager.reload_config(_config(("hp3", three, ""), ("hp3", three, "")))
        with pytest.raises(ServingError, match="Cannot transition to requested config"):
            manager.reload_config(parse_model_server_config("custom_model_config {}"))
    finally:
        manager.stop()


def test_polling_thread_picks_up_new_versions(tfserving_testdata: Path, tmp_path: Path) -> None:
    base = tmp_path / "hp2"
    source = tfserving_testdata / "saved_model_half_plus_two_2_versions"
    shutil.copytree(source / "00000123", base / "123")
    manager = ModelManager(_config(("hp2", base, "")), poll_wait_seconds=0.1)
    manager.start()
    try:
        shutil.copytree(source / "00000124", base / "124")
        deadline = time.monotonic() + 60
        while manager.available_versions("hp2") != [124] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.available_versions("hp2") == [124]
    finally:
        manager.stop()


def test_config_file_watch_applies_changes(
    two_versions: Path, tfserving_testdata: Path, tmp_path: Path
) -> None:
    from serving.model_server.config import read_model_server_config

    path = tmp_path / "models.config"
    path.write_text(
        f'model_config_list {{ config {{ name: "hp2" base_path: "{two_versions}" model_platform: "tensorflow" }} }}'
    )
    manager = ModelManager(read_model_server_config(path), poll_wait_seconds=0)
    manager.start()
    try:
        manager.watch_config_file(lambda: read_model_server_config(path), 0.1)
        three = tfserving_testdata / "saved_model_half_plus_three"
        text = path.read_text().replace(
            "} }", f'}} config {{ name: "hp3" base_path: "{three}" model_platform: "tensorflow" }} }}'
        )
        tmp = tmp_path / "models.config.tmp"
        tmp.write_text(text)
        tmp.rename(path)
        deadline = time.monotonic() + 60
        while not manager.available_versions("hp3") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manager.get_servable("hp3").version == 123
    finally:
        manager.stop()


def test_latest_lookup_follows_unload_and_stop(two_versions: Path) -> None:
    """The lock-free latest lookup never hands out a version that was unloaded."""
    manager = ModelManager(
        _config(("hp2", two_versions, "model_version_policy { all {} }")), poll_wait_seconds=0
    )
    manager.start()
    try:
        assert manager.get_servable("hp2").version == 124
        shutil.rmtree(two_versions / "00000124")
        manager.poll_once()
        assert manager.available_versions("hp2") == [123]
        assert manager.get_servable("hp2").version == 123
    finally:
        manager.stop()
    with pytest.raises(ServingError, match=r"Servable not found for request: Latest\(hp2\)"):
        manager.get_servable("hp2")

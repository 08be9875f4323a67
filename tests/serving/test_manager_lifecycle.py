"""The manager's lifecycle rules from TF Serving: load retries, waiting for versions, base-path
changes without a gap, unloaded versions closed once released."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from serving.model_server.config import parse_model_server_config  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.load_retry import RetryPolicy  # noqa: E402
from serving.model_server.manager import ModelManager  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402

X = np.array([[1.0], [2.0]], dtype=np.float32)


def _config(name: str, path: Path, extra: str = "") -> object:
    return parse_model_server_config(
        f'model_config_list {{ config {{ name: "{name}" base_path: "{path}" '
        f'model_platform: "tensorflow" {extra} }} }}'
    )


@pytest.fixture()
def source(tfserving_testdata: Path) -> Path:
    return tfserving_testdata / "saved_model_half_plus_two_2_versions"


class CountingFactory:
    """Builds real Servables and counts the attempts per version."""

    def __init__(self) -> None:
        self.attempts: dict[int, int] = {}

    def __call__(self, name: str, version: int, path: Path) -> Servable:
        self.attempts[version] = self.attempts.get(version, 0) + 1
        return Servable(name, version, path)


def _serving_123(
    source: Path, tmp_path: Path, policy: RetryPolicy
) -> tuple[Path, CountingFactory, ModelManager]:
    """A started manager serving version 123 of hp2 from a fresh base path, counting loads."""
    base = tmp_path / "hp2"
    shutil.copytree(source / "00000123", base / "123")
    factory = CountingFactory()
    manager = ModelManager(
        _config("hp2", base), poll_wait_seconds=0, servable_factory=factory, retry_policy=policy
    )
    manager.start()
    return base, factory, manager


def test_a_version_completed_after_it_was_first_seen_loads_on_a_retry(source: Path, tmp_path: Path) -> None:
    base, factory, manager = _serving_123(source, tmp_path, RetryPolicy(5, 300_000))
    try:
        (base / "124").mkdir()  # the copy has started: the directory exists, the model does not

        def finish_copy() -> None:
            time.sleep(0.4)
            for child in (source / "00000124").iterdir():
                target = base / "124" / child.name
                (shutil.copytree if child.is_dir() else shutil.copy)(child, target)

        copier = threading.Thread(target=finish_copy)
        copier.start()
        assert manager.poll_once() == []
        copier.join()
        assert factory.attempts[124] >= 2  # the first attempt saw an empty directory
        assert manager.available_versions("hp2") == [124]
        assert manager.status("hp2", 124)[0].state == "AVAILABLE"
    finally:
        manager.stop()


def test_retries_are_bounded_and_the_status_keeps_the_last_error(
    source: Path, tfserving_testdata: Path, tmp_path: Path
) -> None:
    base, factory, manager = _serving_123(source, tmp_path, RetryPolicy(2, -1))
    try:
        shutil.copytree(tfserving_testdata / "bad_half_plus_two" / "00000123", base / "124")
        failures = manager.poll_once()
        assert [(n, v) for n, v, _ in failures] == [("hp2", 124)]
        assert factory.attempts[124] == 3  # one attempt and max_num_load_retries retries
        status = manager.status("hp2", 124)[0]
        assert (status.state, status.error_code) == ("END", grpc.StatusCode.NOT_FOUND)
        assert status.error_message.startswith("Could not find SavedModel .pb or .pbtxt")
        assert manager.available_versions("hp2") == [123]  # the failed version never replaced it
        assert manager.poll_once() == [] and factory.attempts[124] == 3  # errored: not retried again
    finally:
        manager.stop()


def test_a_retry_stops_once_the_version_is_no_longer_aspired(source: Path, tmp_path: Path) -> None:
    base, factory, manager = _serving_123(source, tmp_path, RetryPolicy(50, 100_000))
    try:
        (base / "124").mkdir()
        threading.Timer(0.25, lambda: (base / "124").rmdir()).start()
        started = time.monotonic()
        manager.poll_once()
        assert time.monotonic() - started < 3  # cancelled, not 50 x 0.1 s
        assert 2 <= factory.attempts[124] < 10
    finally:
        manager.stop()


def test_start_waits_for_a_first_version(source: Path, tmp_path: Path) -> None:
    """TF Serving starts with no version on disk and waits ("No versions of servable ... found")."""
    base = tmp_path / "hp2"
    base.mkdir()
    manager = ModelManager(_config("hp2", base), poll_wait_seconds=0.1, wait_timeout=60)
    threading.Timer(0.5, lambda: shutil.copytree(source / "00000123", base / "123")).start()
    manager.start()
    try:
        np.testing.assert_array_equal(
            manager.runner.run(manager.get_servable("hp2"), "", {"x": X})["y"], 0.5 * X + 2
        )
    finally:
        manager.stop()
    bounded = ModelManager(_config("hp2", tmp_path / "never"), poll_wait_seconds=0.05, wait_timeout=0.3)
    with pytest.raises(
        ServingError, match=r"^1 model\(s\) did not become available: \{\{\{name: hp2 version: -1\}\}, \}$"
    ):
        bounded.start()
    bounded.stop()


def test_a_new_base_path_swaps_without_a_gap(source: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(source / "00000123", old / "123")
    shutil.copytree(source / "00000124", new / "124")
    manager = ModelManager(_config("hp2", old), poll_wait_seconds=0)
    manager.start()
    errors: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                manager.get_servable("hp2")
            except BaseException as exc:  # a NOT_FOUND gap is the bug under test
                errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        manager.reload_config(_config("hp2", new))
    finally:
        stop.set()
        thread.join()
    try:
        assert errors == []
        assert manager.available_versions("hp2") == [124]
        assert {s.version: s.state for s in manager.status("hp2")} == {124: "AVAILABLE", 123: "END"}
    finally:
        manager.stop()


def test_an_unloaded_version_closes_once_released(source: Path, tmp_path: Path) -> None:
    base = tmp_path / "hp2"
    shutil.copytree(source / "00000123", base / "123")
    manager = ModelManager(_config("hp2", base), poll_wait_seconds=0)
    manager.start()
    try:
        held = manager.get_servable("hp2")
        released = weakref.ref(held)
        shutil.copytree(source / "00000124", base / "124")
        manager.poll_once()
        assert manager.available_versions("hp2") == [124]
        # A request still holding version 123 finishes on it ...
        np.testing.assert_array_equal(held.run("", {"x": X})["y"], 0.5 * X + 2)
        finalizer = held._finalizer
        assert finalizer.alive
        del held
        gc.collect()
        # ... and its Session is closed once nothing holds it any more.
        assert released() is None and not finalizer.alive
    finally:
        manager.stop()


def test_loads_run_in_parallel_with_num_load_threads(tfserving_testdata: Path, tmp_path: Path) -> None:
    names = {
        "hp2": tfserving_testdata / "saved_model_half_plus_two_cpu",
        "hp3": tfserving_testdata / "saved_model_half_plus_three",
    }
    body = "".join(
        f'config {{ name: "{n}" base_path: "{p}" model_platform: "tensorflow" }}' for n, p in names.items()
    )
    threads: set[str] = set()

    def factory(name: str, version: int, path: Path) -> Servable:
        threads.add(threading.current_thread().name)
        return Servable(name, version, path)

    config = parse_model_server_config(f"model_config_list {{ {body} }}")
    manager = ModelManager(config, poll_wait_seconds=0, servable_factory=factory, num_load_threads=2)
    manager.start()
    try:
        assert manager.model_names() == ["hp2", "hp3"]
        assert all(name.startswith("model-load") for name in threads)
    finally:
        manager.stop()

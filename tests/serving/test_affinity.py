"""Python serving threads on one CPU, TensorFlow's pools on all: checked on a running server."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.model_server.affinity import on_cpus, python_threads_cpu, thread_pinner, unpinned_loads
from serving.model_server.config import ServerOptions
from serving.model_server.process_defaults import POLLER_EXPERIMENTS, grpc_experiments_default
from serving.model_server.server import ModelServer
from serving.model_server.tensors import from_ndarray

needs_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and at least 2 CPUs",
)


@pytest.mark.parametrize(
    ("cpus", "mode", "expected"),
    [
        ({3, 5}, "auto", 3),  # 2 vCPUs, where pinning was measured: the first CPU of the set
        ({4, 5, 6, 7}, "auto", 4),  # still small
        (set(range(8)), "auto", None),  # a big machine: not unless asked
        (set(range(8)), "true", 0),
        ({3, 5}, "false", None),
        ({2}, "true", None),  # one CPU: nothing to gain
    ],
)
def test_pin_mode_rules(monkeypatch, cpus: set[int], mode: str, expected: int | None) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cpus, raising=False)
    assert python_threads_cpu(mode) == expected


def test_pin_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="--pin_python_threads=yes must be one of auto, true, false"):
        python_threads_cpu("yes")


@pytest.mark.parametrize(("cpus", "expected"), [(1, POLLER_EXPERIMENTS), (4, POLLER_EXPERIMENTS), (5, None)])
def test_grpc_experiments_only_on_small_machines(cpus: int, expected: str | None) -> None:
    assert grpc_experiments_default(cpus) == expected
    assert POLLER_EXPERIMENTS == "-event_engine_listener,-event_engine_for_all_other_endpoints"


@needs_two_cpus
def test_choice_and_pinning_of_one_thread() -> None:
    allowed = os.sched_getaffinity(0)
    assert python_threads_cpu("false") is None
    cpu = python_threads_cpu("true")
    assert cpu == min(allowed)
    seen: list[set[int]] = []

    def run() -> None:
        thread_pinner(cpu)()
        seen.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [{cpu}]
    assert os.sched_getaffinity(0) == allowed  # only the calling thread moved
    thread_pinner(None)()  # disabled: a no-op
    assert os.sched_getaffinity(0) == allowed


def _threads_by_name() -> dict[str, list[set[int]]]:
    out: dict[str, list[set[int]]] = {}
    for task in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
            out.setdefault(name, []).append(os.sched_getaffinity(int(task)))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


@needs_two_cpus
@pytest.mark.parametrize("pin", [True, False])
def test_running_server_pins_its_python_threads_only(tfserving_testdata: Path, pin: bool) -> None:
    allowed = os.sched_getaffinity(0)
    options = ServerOptions(
        enable_batching=True,
        port=0,
        bind_address="127.0.0.1",
        model_name="half_plus_two",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
        file_system_poll_wait_seconds=0,
        pin_python_threads="true" if pin else "false",
    )
    with ModelServer(options) as server:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(from_ndarray(np.array([[1.0]], np.float32)))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert list(stub.Predict(request, timeout=30).outputs["y"].float_val) == [2.5]
        native = {thread.native_id: thread.name for thread in threading.enumerate()}
        ours = {
            name: os.sched_getaffinity(tid)
            for tid, name in native.items()
            if name.startswith(("grpc-inline", "batch-thread"))
        }
        assert any(n.startswith("grpc-inline") for n in ours) and any(
            n.startswith("batch-thread") for n in ours
        )
        expected = {min(allowed)} if pin else allowed
        assert set(map(frozenset, ours.values())) == {frozenset(expected)}
        tensorflow = [
            cpus for name, sets in _threads_by_name().items() if name.startswith("tf_") for cpus in sets
        ]
        assert tensorflow and all(cpus == allowed for cpus in tensorflow)  # TF keeps every CPU
    assert os.sched_getaffinity(0) == allowed


@needs_two_cpus
def test_on_cpus_restores_the_threads_set() -> None:
    allowed = os.sched_getaffinity(0)
    one = {min(allowed)}
    inside: list[set[int]] = []
    with on_cpus(one):
        inside.append(os.sched_getaffinity(0))
    assert inside == [one] and os.sched_getaffinity(0) == allowed
    with pytest.raises(RuntimeError), on_cpus(one):
        raise RuntimeError("the set is restored on errors too")
    assert os.sched_getaffinity(0) == allowed
    with unpinned_loads(None)():  # not pinning: loads stay where they are
        assert os.sched_getaffinity(0) == allowed


@needs_two_cpus
def test_reload_through_the_api_loads_on_every_cpu(tfserving_testdata: Path, monkeypatch) -> None:
    """HandleReloadConfigRequest loads models in a pinned gRPC thread; TensorFlow's pools, which
    start from the thread of the first load, must still get every CPU: the load runs unpinned."""
    allowed = os.sched_getaffinity(0)
    base = str(tfserving_testdata / "saved_model_half_plus_two_cpu")
    options = ServerOptions(
        port=0,
        bind_address="127.0.0.1",
        model_name="half_plus_two",
        model_base_path=base,
        file_system_poll_wait_seconds=0,
        pin_python_threads="true",
    )
    with ModelServer(options) as server:
        seen: list[tuple[str, set[int]]] = []
        load = server.manager.loader.factory

        def factory(name: str, version: int, path: Path) -> Any:  # where TensorFlow's pools start
            seen.append((threading.current_thread().name, os.sched_getaffinity(0)))
            return load(name, version, path)

        monkeypatch.setattr(server.manager.loader, "factory", factory)
        request = model_management_pb2.ReloadConfigRequest()
        for name in ("half_plus_two", "half_plus_two_again"):  # the second is a new load
            entry = request.config.model_config_list.config.add()
            entry.name, entry.base_path, entry.model_platform = name, base, "tensorflow"
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                request, timeout=60
            )
        assert response.status.error_code == 0
        assert len(seen) == 1
        thread_name, cpus = seen[0]
        assert thread_name.startswith("grpc-inline") and cpus == allowed
        # and the serving thread went back to its CPU afterwards
        pinned = {
            frozenset(os.sched_getaffinity(t.native_id))
            for t in threading.enumerate()
            if t.name.startswith("grpc-inline") and t.native_id
        }
        assert pinned == {frozenset({min(allowed)})}

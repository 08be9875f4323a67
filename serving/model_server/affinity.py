"""Keep the server's Python threads on one CPU; TensorFlow's thread pools keep all of them.

Why: Python threads run one at a time under the GIL, so spreading them over CPUs buys no
parallelism, while every GIL hand-off and queue wake-up between threads on different CPUs
costs a cross-CPU wake-up (on a VM, often of a halted vCPU). Measured on 2 vCPUs, 32 clients
x 16-row requests: with the gRPC, batch and REST threads on one CPU and TensorFlow free,
2,810 req/s without batching (2,320-2,490 free) and 4,670-4,700 with (3,220-3,850 free). The
model's own run, which releases the GIL, still uses every CPU.

TensorFlow starts its pools from the thread that first loads a model, and they inherit that
thread's CPUs. Start-up loads run in the (unpinned) main thread, but a load asked for through
the API (HandleReloadConfigRequest) runs in a pinned gRPC thread, so the manager runs every load
under ``unpinned_loads`` (else a server started without models would put all of TensorFlow on
one CPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager

from serving.model_server.process_defaults import is_small_machine

PIN_MODES = ("auto", "true", "false")


def python_threads_cpu(mode: str) -> int | None:
    """The CPU the serving threads go to (``--pin_python_threads``): the first this process
    may use, or None for no pinning.

    "true" pins, "false" does not, and "auto" pins only on a machine of at most
    4 schedulable CPUs (process_defaults): the gain above was measured on 2 vCPUs, and on a
    big machine one CPU for every Python thread may be the bottleneck instead. Never pinned
    where it cannot matter or work: one CPU, or no affinity API (not Linux).

    Raises:
        ValueError: a mode other than auto, true, false.
    """
    if mode not in PIN_MODES:
        raise ValueError(f"--pin_python_threads={mode} must be one of {', '.join(PIN_MODES)}")
    if mode == "false" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or (mode == "auto" and not is_small_machine(len(cpus))):
        return None
    return cpus[0]


def thread_pinner(cpu: int | None) -> Callable[[], None]:
    """A thread initializer that moves the calling thread to ``cpu`` (no-op for None).

    Threads a pinned thread starts inherit its CPU, so call it only in threads that start
    Python threads (not TensorFlow's: those start from the thread that loads a model).
    """

    def pin() -> None:
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:  # the CPU went away (cpuset changed): stay where we are
                pass

    return pin


@contextmanager
def on_cpus(cpus: Collection[int] | None) -> Iterator[None]:
    """Run the block with the calling thread on ``cpus`` (no-op for None), then restore its set."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def unpinned_loads(cpu: int | None) -> Callable[[], AbstractContextManager[None]]:
    """What the model manager wraps every load in: the CPUs this process has now (call it from
    the main thread at start-up), or nothing when threads are not pinned (``cpu`` None)."""
    cpus = frozenset(os.sched_getaffinity(0)) if cpu is not None else None
    return lambda: on_cpus(cpus)

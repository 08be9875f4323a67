"""Process-wide serving defaults that were measured on a small machine, and apply only to one."""

# Both defaults below were measured on a 2-vCPU VM (benchmarks/bench_model_server.py, 32
# clients x 16 rows), where a thread hop or a cross-CPU wake-up is a large part of a 1 ms
# request. On bigger machines nothing was measured, and both trade parallelism for fewer
# hops, so there they stay off unless asked for. "Small" stops at 4 CPUs: a margin above
# what was measured, not a second measurement. This module imports nothing that imports
# grpc: the command line calls it before grpc is first imported (grpc reads
# GRPC_EXPERIMENTS once, then).

from __future__ import annotations

SMALL_MACHINE_CPUS = 4

# With these, the thread polling grpc's completion queue (the inline server's, which then
# runs the handler) does the socket I/O itself instead of grpc's event engine threads
# handing it each event: batching on 5,610-5,750 -> 5,870-5,970 req/s, off 2,890-2,970 ->
# 3,000-3,010 on 2 vCPUs; gRPC latency unchanged.
POLLER_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"


def is_small_machine(cpus: int) -> bool:
    """Whether ``cpus`` schedulable CPUs is a machine the small-machine defaults are for."""
    return cpus <= SMALL_MACHINE_CPUS


def grpc_experiments_default(cpus: int) -> str | None:
    """The GRPC_EXPERIMENTS value to set when the variable is unset, for a process that may
    run on ``cpus`` CPUs: the poller experiments on a small machine, else None (grpc's own
    default: its event engine, which spreads socket I/O over threads)."""
    return POLLER_EXPERIMENTS if is_small_machine(cpus) else None

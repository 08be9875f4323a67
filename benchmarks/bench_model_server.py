"""Embedded model server vs the in-process SavedModel call: CTR predict latency, batching throughput."""

# The server runs as its own process (`python -m serving.model_server`, as deployed) so client
# and server do not share a GIL; every measurement uses the same exported model and rows, and
# the latency sources are interleaved block by block so machine noise hits them alike.
#
# Latency runs with the CPUs split in two: the server process on one half, this process (the
# client and the in-process call) on the other. That is how gRPC's own benchmark harness runs
# client and server on one machine; without it, on a 2-vCPU VM the scheduler keeps waking
# threads on the other, halted vCPU, which costs about 0.3 ms per request (see the issue note)
# and measures the machine's scheduler, not the server. `--no-cpu-split` measures without it.
# The in-process call is timed on this process's half and on all CPUs; the faster is the
# baseline. Throughput runs unsplit: there the server gets the whole machine, as deployed. The
# servers without and with batching both run throughout and are loaded in alternation, several
# runs each; the medians and the median of the per-round on/off ratios are reported.
#
#     .venv/bin/python benchmarks/bench_model_server.py [--rounds 400] [--seconds 4] [--throughput-rounds 5]
#         [--grpc-face inline|stock]

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_ctr_model(out: Path, seed: int) -> Path:
    """Export an untrained DeepFM over a recsys-like contract (latency does not need training)."""
    from export.saved_model import export_saved_model
    from training.features import Feature, FeatureContract
    from training.models import ModelConfig, build_model

    contract = FeatureContract(
        features=(
            Feature("user_id", "categorical_string", "user", hash_buckets=10_000, embedding_dim=8),
            Feature(
                "user_segment",
                "categorical_string",
                "user",
                vocabulary=tuple(f"s{i}" for i in range(20)),
                embedding_dim=8,
            ),
            Feature("item_id", "categorical_int", "item", vocabulary=tuple(range(2000)), embedding_dim=8),
            Feature(
                "item_category",
                "categorical_string",
                "item",
                vocabulary=tuple(f"c{i}" for i in range(50)),
                embedding_dim=8,
            ),
            Feature(
                "item_tags",
                "multi_categorical",
                "item",
                vocabulary=tuple(f"t{i}" for i in range(100)),
                max_len=5,
                embedding_dim=8,
            ),
            Feature("item_price", "numeric", "item", mean=20.0, std=10.0),
            Feature("item_popularity", "numeric", "item", mean=0.0, std=1.0),
            Feature("hour", "categorical_int", "context", vocabulary=tuple(range(24)), embedding_dim=8),
            Feature(
                "device",
                "categorical_string",
                "context",
                vocabulary=("ios", "android", "web"),
                embedding_dim=8,
            ),
        )
    )
    model = build_model("deepfm", contract, config=ModelConfig(hidden_units=(64, 32)), seed=seed)
    export_saved_model(model, contract, out, "ctr", version=1)
    return out / "ctr"


def make_rows(rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw feature columns in wire dtypes (strings as object arrays of str)."""
    tags = ["|".join(rng.choice([f"t{i}" for i in range(120)], rng.integers(0, 6))) for _ in range(rows)]
    return {
        "user_id": np.array([f"u{i}" for i in rng.integers(0, 50_000, rows)], dtype=object),
        "user_segment": np.array([f"s{i}" for i in rng.integers(0, 25, rows)], dtype=object),
        "item_id": rng.integers(0, 2500, rows).astype(np.int64),
        "item_category": np.array([f"c{i}" for i in rng.integers(0, 60, rows)], dtype=object),
        "item_tags": np.array(tags, dtype=object),
        "item_price": rng.gamma(2.0, 10.0, rows).astype(np.float32),
        "item_popularity": rng.normal(size=rows).astype(np.float32),
        "hour": rng.integers(0, 24, rows).astype(np.int64),
        "device": np.array(rng.choice(["ios", "android", "web"], rows), dtype=object),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def split_cpus() -> tuple[set[int], set[int]] | None:
    """This process's CPUs in two halves (server, client); None where that is impossible."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def pin_process(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of ``pid`` (threads started later inherit it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except (ProcessLookupError, FileNotFoundError):
            pass  # the thread ended meanwhile


# Applies --grpc_face inside the server process as well as passing the flag: it selects the
# face only where the model server hands options.grpc_face to create_grpc_server, and this
# keeps the benchmark's choice honest either way. GRPC_EXPERIMENTS is set first, as the
# command line sets it, since importing grpc_service imports grpc (which reads it once).
_FACE_BOOTSTRAP = """
import functools, os, sys
face = sys.argv.pop(1)
from serving.model_server.process_defaults import grpc_experiments_default
experiments = grpc_experiments_default(len(os.sched_getaffinity(0)))
if experiments:
    os.environ.setdefault("GRPC_EXPERIMENTS", experiments)
from serving.model_server import grpc_service
grpc_service.create_grpc_server = functools.partial(grpc_service.create_grpc_server, face=face)
from serving.cli import main
sys.exit(main(sys.argv[1:]))
"""


def server_command(flags: tuple[str, ...]) -> list[str]:
    """How to start the model server: ``-m serving.model_server``, or the bootstrap above when
    the flags choose a gRPC face."""
    faces = [flag.split("=", 1)[1] for flag in flags if flag.startswith("--grpc_face=")]
    if not faces:
        return [sys.executable, "-m", "serving.model_server"]
    return [sys.executable, "-c", _FACE_BOOTSTRAP, faces[-1]]


@contextmanager
def model_server(
    base: Path,
    *,
    batching_file: Path | None = None,
    extra_flags: tuple[str, ...] = (),
    cpus: set[int] | None = None,
) -> Iterator[tuple[int, int]]:
    """Start `python -m serving.model_server` on free ports; yields (grpc_port, rest_port)."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    grpc_port, rest_port = free_port(), free_port()
    cmd = [
        *server_command(extra_flags),
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--bind_address=127.0.0.1",
        "--model_name=ctr",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0",
        # On grpc.server (the fallback) a handler holds a thread while its request waits in the
        # batcher: give every client one (same flag value with batching off and on).
        "--grpc_max_threads=64",
    ]
    cmd += extra_flags
    if batching_file is not None:
        cmd += ["--enable_batching=true", f"--batching_parameters_file={batching_file}"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if cpus is not None:  # before TensorFlow and gRPC start their threads, and again once ready
            pin_process(proc.pid, cpus)
        deadline = time.monotonic() + 180
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = "ctr"
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
                try:
                    states = stub.GetModelStatus(request, timeout=2).model_version_status
                    if any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for s in states):
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not become ready in 180 s")
                time.sleep(0.2)
        if cpus is not None:
            pin_process(proc.pid, cpus)
        yield grpc_port, rest_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


IN_PROCESS = "in-process signature call (tf.Tensor feeds)"
IN_PROCESS_ALL_CPUS = "  same, this process on all CPUs"


def latency_table(
    base: Path,
    rows: dict[str, np.ndarray],
    rounds: int,
    server_flags: tuple[str, ...] = (),
    block: int = 20,
    cpu_split: tuple[set[int], set[int]] | None = None,
) -> list[tuple[str, list[float]]]:
    """Interleaved p50/p90 of: in-process call, gRPC Predict, REST columnar, REST row.

    Each round runs ``block`` calls of every source in turn. With ``cpu_split`` the server runs
    on the first CPU set and this process on the second, and the in-process call is also timed
    with this process on all CPUs.
    """
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.model_server.tensors import from_ndarray, to_ndarray

    signature = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    tf_inputs = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in rows.items()}

    def in_process() -> np.ndarray:
        return signature(**tf_inputs)["ctr"].numpy()

    def in_process_numpy() -> np.ndarray:
        feeds = {k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in rows.items()}
        return signature(**feeds)["ctr"].numpy()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ctr"
    request.output_filter.append("ctr")
    for name, values in rows.items():
        request.inputs[name].CopyFrom(from_ndarray(values))
    columnar = json.dumps({"inputs": {k: v.tolist() for k, v in rows.items()}}).encode()
    keys = list(rows)
    as_lists = {k: v.tolist() for k, v in rows.items()}
    row_body = json.dumps(
        {"instances": [{k: as_lists[k][i] for k in keys} for i in range(len(rows[keys[0]]))]}
    ).encode()

    reference = in_process()
    server_cpus, client_cpus = cpu_split if cpu_split else (None, None)
    all_cpus = os.sched_getaffinity(0) if cpu_split else None
    with (
        model_server(base, extra_flags=server_flags, cpus=server_cpus) as (grpc_port, rest_port),
        grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)

        def grpc_predict() -> np.ndarray:
            return to_ndarray(stub.Predict(request, timeout=60).outputs["ctr"])

        def rest(body: bytes, key: str) -> Callable[[], np.ndarray]:
            def call() -> np.ndarray:
                conn.request(
                    "POST", "/v1/models/ctr:predict", body=body, headers={"Content-Type": "application/json"}
                )
                answer = json.loads(conn.getresponse().read())
                value = answer[key]
                if key == "outputs":
                    return np.array(value["ctr"], np.float32)
                return np.array([p["ctr"] for p in value], np.float32)

            return call

        # (name, call, CPUs this process runs on while timing it)
        sources: list[tuple[str, Callable[[], np.ndarray], set[int] | None]] = [
            (IN_PROCESS, in_process, client_cpus),
            ("in-process signature call (numpy -> tf.constant)", in_process_numpy, client_cpus),
            ("gRPC Predict", grpc_predict, client_cpus),
            ("REST columnar (inputs)", rest(columnar, "outputs"), client_cpus),
            ("REST row (instances)", rest(row_body, "predictions"), client_cpus),
        ]
        if cpu_split:
            sources.insert(1, (IN_PROCESS_ALL_CPUS, in_process, all_cpus))
        samples: dict[str, list[float]] = {name: [] for name, _, _ in sources}
        blocks = max(1, -(-rounds // block))  # rounds rounded up to whole blocks
        for round_ in range(blocks + 1):  # round 0 warms up and checks every route
            for name, fn, cpus in sources:
                if cpus is not None:
                    pin_process(os.getpid(), cpus)
                for _ in range(block):
                    start = time.perf_counter()
                    got = fn()
                    if round_:
                        samples[name].append((time.perf_counter() - start) * 1e3)
                if not round_:
                    np.testing.assert_allclose(got, reference, rtol=1e-5)
        conn.close()
    if all_cpus is not None:
        pin_process(os.getpid(), all_cpus)
    return [(name, samples[name]) for name, _, _ in sources]


async def _closed_loop(stubs: list[Any], requests: list[Any], seconds: float) -> tuple[float, list[float]]:
    """One closed-loop caller per request, spread over ``stubs``, for ``seconds``.

    Returns (calls per second, latencies in ms), timed from the first call to the last answer.
    """
    done = 0
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds

    async def client(i: int) -> None:
        nonlocal done
        request, stub = requests[i], stubs[i % len(stubs)]
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            await stub.Predict(request, timeout=60)
            latencies.append((time.perf_counter() - start) * 1e3)
            done += 1

    await asyncio.gather(*(client(i) for i in range(len(requests))))
    return done / (time.perf_counter() - started), latencies


async def _throughput_rounds(
    ports: dict[str, int], requests: list[Any], channels: int, seconds: float, rounds: int
) -> dict[str, list[tuple[float, list[float]]]]:
    """Alternate closed-loop runs against each server (label -> gRPC port), ``rounds`` each.

    Every server keeps its ``channels`` connections for the whole measurement; each round runs
    the servers in turn, in reversed order every other round, so drift in the machine's speed
    hits them alike. Returns label -> [(calls per second, latencies)] per round.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # A local subchannel pool per channel: otherwise channels to one target share a connection.
    opened = {
        label: [
            grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(channels)
        ]
        for label, port in ports.items()
    }
    try:
        stubs = {
            label: [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in chans]
            for label, chans in opened.items()
        }
        for label, server_stubs in stubs.items():  # warm up every connection; check the answers
            for i, request in enumerate(requests):
                response = await server_stubs[i % channels].Predict(request, timeout=60)
                rows = request.inputs["item_id"].tensor_shape.dim[0].size
                if list(response.outputs) != ["ctr"] or len(response.outputs["ctr"].float_val) != rows:
                    raise RuntimeError(f"{label}: unexpected response {response}")
        results: dict[str, list[tuple[float, list[float]]]] = {label: [] for label in ports}
        labels = list(ports)
        for round_ in range(rounds):
            for label in labels if round_ % 2 == 0 else reversed(labels):
                results[label].append(await _closed_loop(stubs[label], requests, seconds))
    finally:
        for chans in opened.values():
            for channel in chans:
                await channel.close()
    return results


BATCHING_OFF, BATCHING_ON = "batching off", "batching on"


def throughput_table(
    base: Path,
    rng: np.random.Generator,
    clients: int,
    rows_per_request: int,
    seconds: float,
    rounds: int,
    timeout_us: int,
    max_batch_size: int | None = None,
    server_flags: tuple[str, ...] = (),
    channels: int | None = None,
) -> dict[str, list[tuple[float, list[float]]]]:
    """Closed-loop throughput of a server without and one with batching, both running
    throughout and measured in alternation (see _throughput_rounds)."""
    from tensorflow_serving.apis import predict_pb2

    from serving.model_server.tensors import from_ndarray

    requests = []
    for _ in range(clients):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "ctr"
        request.output_filter.append("ctr")
        for name, values in make_rows(rows_per_request, rng).items():
            request.inputs[name].CopyFrom(from_ndarray(values))
        requests.append(request)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as servers:
        params = Path(tmp) / "batching.config"
        params.write_text(
            f"max_batch_size {{ value: {max_batch_size or clients * rows_per_request} }}\n"
            f"batch_timeout_micros {{ value: {timeout_us} }}\n"
            "num_batch_threads { value: 2 }\n"
            "max_enqueued_batches { value: 1000 }\n"
        )
        ports = {
            label: servers.enter_context(
                model_server(base, batching_file=batching, extra_flags=server_flags)
            )[0]
            for label, batching in ((BATCHING_OFF, None), (BATCHING_ON, params))
        }
        return asyncio.run(_throughput_rounds(ports, requests, channels or clients, seconds, rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=400, help="latency calls per source (in blocks of --block)"
    )
    parser.add_argument("--rows", type=int, default=500, help="rows per latency request")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for throughput")
    parser.add_argument("--rows-per-request", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each throughput run")
    parser.add_argument(
        "--throughput-rounds",
        type=int,
        default=5,
        help="throughput runs per mode, alternating between the two servers (medians are reported)",
    )
    parser.add_argument("--batch-timeout-micros", type=int, default=10000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--block", type=int, default=20, help="consecutive calls per source per round")
    parser.add_argument(
        "--no-cpu-split",
        action="store_true",
        help="latency with server and client sharing every CPU (default: each on its own half)",
    )
    parser.add_argument(
        "--max-batch-size", type=int, help="batching max_batch_size (default: clients x rows per request)"
    )
    parser.add_argument(
        "--server-flag",
        action="append",
        default=[],
        help="extra model server flag for every run, e.g. --server-flag=--tensorflow_session_parallelism=-1",
    )
    parser.add_argument(
        "--channels",
        type=int,
        help="gRPC channels (connections) the clients share (default: one per client, as separate "
        "clients would have)",
    )
    parser.add_argument(
        "--grpc-face",
        choices=("auto", "inline", "stock"),
        help="the model server's gRPC face (its --grpc_face; default: the server's own, auto)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server_flags = tuple(args.server_flag)
    if args.grpc_face:
        server_flags += (f"--grpc_face={args.grpc_face}",)
    if server_flags:
        print(f"model server flags: {' '.join(server_flags)}")

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = build_ctr_model(Path(tmp), seed=args.seed)
        rows = make_rows(args.rows, rng)
        if not args.skip_latency:
            cpu_split = None if args.no_cpu_split else split_cpus()
            table = latency_table(base, rows, args.rounds, server_flags, args.block, cpu_split)
            baseline = min(
                statistics.median(t) for name, t in table if name in (IN_PROCESS, IN_PROCESS_ALL_CPUS)
            )
            where = (
                f"server on CPUs {sorted(cpu_split[0])}, this process on {sorted(cpu_split[1])}"
                if cpu_split
                else "server and client on every CPU"
            )
            print(
                f"\nLatency, {args.rows} CTR rows per request, {len(table[0][1])} calls per source in "
                f"blocks of {args.block}; {where} (ms; ratio to the faster in-process p50)"
            )
            print(f"{'source':52s} {'p50':>8s} {'p90':>8s} {'p50 / in-process':>17s}")
            for name, samples in table:
                p50 = percentile(samples, 50)
                print(f"{name:52s} {p50:8.3f} {percentile(samples, 90):8.3f} {p50 / baseline:16.2f}x")
        results = throughput_table(
            base,
            rng,
            args.clients,
            args.rows_per_request,
            args.seconds,
            args.throughput_rounds,
            args.batch_timeout_micros,
            args.max_batch_size,
            server_flags,
            args.channels,
        )
    print(
        f"\nThroughput, {args.clients} concurrent gRPC clients x {args.rows_per_request}-row requests over "
        f"{args.channels or args.clients} channel(s); {args.throughput_rounds} runs of {args.seconds:g} s per mode, "
        "alternating (batching: max_batch_size "
        f"{args.max_batch_size or args.clients * args.rows_per_request}, batch_timeout_micros "
        f"{args.batch_timeout_micros}, num_batch_threads 2)"
    )
    print(
        f"{'mode':14s} {'req/s p50':>10s} {'min-max':>13s} {'rows/s p50':>11s} {'p50 ms':>8s} {'p99 ms':>8s}"
    )
    for label, runs in results.items():
        rates = [rate for rate, _ in runs]
        latencies = [x for _, run_latencies in runs for x in run_latencies]
        print(
            f"{label:14s} {statistics.median(rates):10.1f} {min(rates):6.0f}-{max(rates):<6.0f} "
            f"{statistics.median(rates) * args.rows_per_request:11.0f} "
            f"{percentile(latencies, 50):8.2f} {percentile(latencies, 99):8.2f}"
        )
    ratios = [on / off for (on, _), (off, _) in zip(results[BATCHING_ON], results[BATCHING_OFF], strict=True)]
    print(
        f"batching on / off throughput: {statistics.median(ratios):.2f}x median of per-round ratios "
        f"({', '.join(f'{r:.2f}' for r in ratios)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark /recommend (500 candidates, concurrency 4) against the Predict call alone, gRPC and REST.

Starts the ranking service as its own process (``python -m recommender_client.service``) for each
protocol and online-state backend given, against an already running model server, and prints a
table: p50/p99 of /recommend, p50/p99 of a Predict call with the same 500 rows made directly with
the client, their ratio, and the service's resident memory. Numbers go into notes, never asserts.
The Predict baseline and the services (experiment off and on together) take turns in blocks of
``--block`` requests, so the machine's load changes hit every source alike.

``--state memory,redis`` gives a row per backend; for ``redis`` the script starts its own empty
``redis-server`` (no persistence) on a free port unless ``--redis-url`` names one (whose data it
leaves alone, so the state there is whatever earlier runs left).

``--experiment off,on`` adds a row with a 50/50 experiment running (``RANKER_EXPERIMENTS_PATH``):
arm ``a`` asks for the default model, arm ``b`` pins the newest AVAILABLE version by number, so
the assignment hash and the pinned model_spec are both on the path while the two arms score with
the same model (the p50 ratio of on/off is the experiment's cost).

On one small machine the model server, the service and this load generator share the cores, so
the model server's TensorFlow threads matter: with its defaults (intra-op threads = cores) they
compete with the service for the cores, and the p50 ratio came out 2.41-2.84 (3 runs) against
2.09-2.22 with ``--tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=1``,
alternated on one loaded machine. Both sides of the ratio use the same server; say which flags
it ran with when quoting a number. (In production TF Serving has machines of its own.)

Example:
    python -m serving.model_server --port=8500 --rest_api_port=8501 --model_name=ctr \\
        --model_base_path=runs/demo/serving/ctr \\
        --tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=1 &
    python benchmarks/bench_recommend.py --artifacts-dir runs/demo/artifacts --model-name ctr \\
        --grpc-target 127.0.0.1:8500 --rest-url http://127.0.0.1:8501 --state memory,redis
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recommender_client.features import FeatureJoiner, InMemoryFeatureStore  # noqa: E402
from recommender_client.plan import RecallConfig, default_sources  # noqa: E402
from recommender_client.recall.artifacts import load_artifacts  # noqa: E402
from recommender_client.recall.sources import merge_recall  # noqa: E402
from training.features import FeatureContract  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_load(call: Callable[[int], None], *, requests: int, concurrency: int) -> tuple[np.ndarray, float]:
    """Latencies (seconds) of ``requests`` calls spread over ``concurrency`` threads, and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            start = time.perf_counter()
            call(k)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.array(latencies), time.perf_counter() - wall


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


def maps_mention_tensorflow(pid: int) -> bool:
    return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()


@contextlib.contextmanager
def redis_for(args: argparse.Namespace) -> Iterator[str]:
    """``--redis-url`` as given, or a fresh ``redis-server`` on a free loopback port (stopped after)."""
    if args.redis_url:
        yield args.redis_url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "--state redis needs redis-server on PATH (apt-get install redis-server) or --redis-url"
        )
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--zset-max-listpack-entries", "512"],  # as docker/redis.Dockerfile
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not answer PING within 30 s") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def start_service(
    args: argparse.Namespace,
    protocol: str,
    port: int,
    state: str,
    redis_url: str | None,
    experiments: Path | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RANKER_MAX_CANDIDATES": str(args.candidates),
        "RANKER_QUOTA_POPULARITY": str(args.candidates),
        "RANKER_PREDICT_TIMEOUT_S": "1.0",
        "RANKER_REQUEST_DEADLINE_S": "2.0",
        "RANKER_STATE_BACKEND": state,
    }
    if redis_url is not None:
        env["RANKER_REDIS_URL"] = redis_url
    if experiments is not None:
        env["RANKER_EXPERIMENTS_PATH"] = str(experiments)
    cmd = [
        sys.executable,
        "-m",
        "recommender_client.service",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--artifacts-dir",
        str(args.artifacts_dir),
        "--protocol",
        protocol,
        "--model-name",
        args.model_name,
    ]
    if args.contract:
        cmd += ["--contract", str(args.contract)]
    if args.rules:
        cmd += ["--rules", str(args.rules)]
    cmd += ["--grpc-target", args.grpc_target] if protocol == "grpc" else ["--rest-url", args.rest_url]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"ranking service exited with {proc.returncode}")
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("ranking service did not become ready within 60 s (is the model server up?)")


def experiment_file(args: argparse.Namespace, folder: Path) -> Path:
    """A 50/50 experiment over one model: arm a the default spec, arm b its newest version pinned."""
    from recommender_client.client import GrpcClient, RestClient
    from recommender_client.model_check import newest

    client = (
        GrpcClient(target=args.grpc_target, timeout=2.0)
        if args.grpc_target
        else RestClient(base_url=args.rest_url, timeout=2.0)
    )
    with client:
        state, version = newest(client.model_status(args.model_name))
    if state != "AVAILABLE" or version is None:
        raise RuntimeError(f"model {args.model_name!r} has no AVAILABLE version ({state})")
    arms = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "version": int(version)}]
    path = folder / "experiments.json"
    path.write_text(json.dumps({"active": "bench", "experiments": [{"name": "bench", "arms": arms}]}))
    return path


def predict_inputs(args: argparse.Namespace, users: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """The same model inputs the service builds: recall for each user, then the feature join."""
    artifacts = load_artifacts(args.artifacts_dir)
    contract = FeatureContract.load(args.contract or args.artifacts_dir)
    quotas = {"itemcf": 250, "category_popularity": 100, "new": 50, "popularity": args.candidates}
    config = RecallConfig(quotas=quotas, max_candidates=args.candidates)
    sources = default_sources(artifacts, config)
    joiner = FeatureJoiner(contract, InMemoryFeatureStore.from_artifacts(artifacts))
    out = []
    for user in users:
        lists = {s.name: s.recall(user, artifacts.as_of, quotas[s.name]) for s in sources}
        merged = merge_recall(lists, quotas, args.candidates)
        items = [artifacts.catalog.item_ids[p] for p in merged.positions]
        out.append(joiner.join(user, items, {})[0])
    return out


def recommender_call(
    port: int, users: Sequence[str], now: float, k: int, seen: dict[str, list]
) -> Callable[[int], None]:
    """One /recommend over a kept-alive connection per thread, recording degraded and candidates."""
    local = threading.local()

    def recommend(i: int) -> None:
        # The load generator shares the 2 cores with the service and the model server, so it
        # must be lean: http.client with a kept-alive connection per thread costs ~0.4 ms of
        # CPU per request where an httpx.Client costs ~1.1 ms (measured with a trivial server).
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        payload = json.dumps({"user_id": users[i % len(users)], "k": k, "now": now})
        conn.request("POST", "/recommend", body=payload, headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        body = json.loads(reply.read())
        if reply.status != 200:
            raise RuntimeError(f"/recommend answered {reply.status}: {body}")
        seen["degraded"].append(body["degraded"])
        seen["candidates"].append(body["candidates"])

    return recommend


def bench_protocol(
    args: argparse.Namespace,
    protocol: str,
    users: Sequence[str],
    inputs: Sequence[dict[str, np.ndarray]],
    *,
    state: str = "memory",
    redis_url: str | None = None,
    experiments: Path | None = None,
    modes: Sequence[str] = ("off",),
) -> dict[str, dict[str, float]]:
    """A row per mode (experiment off/on): Predict alone and each mode's service, loaded in turns.

    Every service runs throughout, and the sources take turns in blocks of ``--block`` requests
    until each has had ``--requests``, so a change in the machine's load (other processes on a
    shared machine) hits the Predict baseline and every /recommend alike; measured one after the
    other, the ratio moved by +-30% between identical runs here.
    """
    from recommender_client.client import GrpcClient, RestClient

    client = (
        GrpcClient(target=args.grpc_target, timeout=2.0)
        if protocol == "grpc"
        else RestClient(base_url=args.rest_url, timeout=2.0)
    )
    ports = {mode: free_port() for mode in modes}
    procs = {
        mode: start_service(
            args, protocol, ports[mode], state, redis_url, experiments if mode == "on" else None
        )
        for mode in modes
    }
    seen = {mode: {"degraded": [], "candidates": []} for mode in modes}
    calls = {mode: recommender_call(ports[mode], users, args.now, args.k, seen[mode]) for mode in modes}
    latencies: dict[str, list[np.ndarray]] = {"predict": [], **{mode: [] for mode in modes}}
    walls = dict.fromkeys(modes, 0.0)
    try:
        with client:

            def predict(k: int) -> None:
                client.predict(inputs[k % len(inputs)], model_name=args.model_name)

            run_load(predict, requests=args.warmup, concurrency=args.concurrency)
            for mode in modes:
                run_load(calls[mode], requests=args.warmup, concurrency=args.concurrency)
                seen[mode]["degraded"].clear()
                seen[mode]["candidates"].clear()
            done = 0
            while done < args.requests:
                block = min(args.block, args.requests - done)
                latencies["predict"].append(
                    run_load(predict, requests=block, concurrency=args.concurrency)[0]
                )
                for mode in modes:
                    lat, wall = run_load(calls[mode], requests=block, concurrency=args.concurrency)
                    latencies[mode].append(lat)
                    walls[mode] += wall
                done += block
        memory = {mode: rss_mb(proc.pid) for mode, proc in procs.items()}
        tf_loaded = {mode: maps_mention_tensorflow(proc.pid) for mode, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
    direct = np.concatenate(latencies["predict"])
    rows = {}
    for mode in modes:
        served = np.concatenate(latencies[mode])
        rows[mode] = {
            "predict_p50": float(np.percentile(direct, 50) * 1e3),
            "predict_p99": float(np.percentile(direct, 99) * 1e3),
            "recommend_p50": float(np.percentile(served, 50) * 1e3),
            "recommend_p99": float(np.percentile(served, 99) * 1e3),
            "recommend_rps": len(served) / walls[mode],
            "candidates": float(np.mean(seen[mode]["candidates"])),
            "degraded": float(np.mean(seen[mode]["degraded"])),
            "rss_mb": memory[mode][0],
            "peak_rss_mb": memory[mode][1],
            "tensorflow_loaded": float(tf_loaded[mode]),
        }
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--artifacts-dir", type=Path, required=True, help="recall artefacts (with the contract)"
    )
    parser.add_argument("--contract", type=Path, help="feature contract (default: in the artefacts)")
    parser.add_argument("--rules", type=Path, help="operator rules YAML for the service")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--grpc-target", help="TF Serving gRPC host:port")
    parser.add_argument("--rest-url", help="TF Serving REST base URL")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument(
        "--block", type=int, default=100, help="requests per source per turn (sources take turns)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--users", type=int, default=50, help="distinct users cycled through")
    parser.add_argument(
        "--state",
        default="memory",
        help="online-state backends, comma-separated: memory, redis (a row for each)",
    )
    parser.add_argument("--redis-url", help="Redis for --state redis (default: start a redis-server)")
    parser.add_argument(
        "--experiment",
        default="off",
        help="off and/or on, comma-separated: on runs a 50/50 experiment over the model (a row each)",
    )
    args = parser.parse_args(argv)
    protocols = [p for p, given in (("grpc", args.grpc_target), ("rest", args.rest_url)) if given]
    if not protocols:
        parser.error("give --grpc-target and/or --rest-url")
    states = [s.strip() for s in args.state.split(",") if s.strip()]
    if not states or set(states) - {"memory", "redis"}:
        parser.error(f"--state takes memory and/or redis, got {args.state!r}")
    modes = [m.strip() for m in args.experiment.split(",") if m.strip()]
    if not modes or set(modes) - {"off", "on"}:
        parser.error(f"--experiment takes off and/or on, got {args.experiment!r}")
    artifacts = load_artifacts(args.artifacts_dir)
    args.now = artifacts.as_of  # evaluate recall and rules at the logs' time
    users = list(artifacts.user_ids[: args.users])
    inputs = predict_inputs(args, users)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        experiments = experiment_file(args, Path(folder)) if "on" in modes else None
        for state in states:
            with redis_for(args) if state == "redis" else contextlib.nullcontext(None) as url:
                for p in protocols:
                    by_mode = bench_protocol(
                        args,
                        p,
                        users,
                        inputs,
                        state=state,
                        redis_url=url,
                        experiments=experiments,
                        modes=modes,
                    )
                    for mode, row in by_mode.items():
                        rows[f"{p}/{state}" + ("/exp" if mode == "on" else "")] = row
    print(
        f"/recommend vs Predict alone: {args.candidates} candidates, k={args.k}, concurrency "
        f"{args.concurrency}, {args.requests} requests, model {args.model_name!r}"
    )
    head = (
        f"{'protocol':16} {'predict p50':>11} {'predict p99':>11} {'rec p50':>8} {'rec p99':>8} "
        f"{'p50 ratio':>9} {'rec/s':>7} {'cands':>6} {'degraded':>8} {'RSS MB':>7} {'peak MB':>7} {'TF':>3}"
    )
    print(head)
    print("-" * len(head))
    for p, r in rows.items():
        print(
            f"{p:16} {r['predict_p50']:11.2f} {r['predict_p99']:11.2f} {r['recommend_p50']:8.2f} "
            f"{r['recommend_p99']:8.2f} {r['recommend_p50'] / r['predict_p50']:9.2f} {r['recommend_rps']:7.0f} "
            f"{r['candidates']:6.0f} {r['degraded']:8.2%} {r['rss_mb']:7.1f} {r['peak_rss_mb']:7.1f} "
            f"{'yes' if r['tensorflow_loaded'] else 'no':>3}"
        )
    for name, r in rows.items():
        off = rows.get(name.removesuffix("/exp"))
        if name.endswith("/exp") and off is not None:
            print(
                f"experiment on/off, {name.removesuffix('/exp')}: rec p50 ratio "
                f"{r['recommend_p50'] / off['recommend_p50']:.3f} (target <= 1.05)"
            )
    print("(latencies in ms; targets: rec p50 <= 2x predict p50, rec p99 <= 30 ms, RSS <= 150 MB, no TF)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

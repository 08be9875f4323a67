"""Run the whole stack on synthetic data, each step through the command line a user would type.

generate -> train (LR, DeepFM) -> evaluate -> export + verify -> recall artefacts -> embedded model
server -> ranking service over gRPC and over REST -> recommendations for a few users -> stop.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demo.processes import Server, free_port, http_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RULES = REPO / "recommender_client" / "rerank" / "default_rules.yaml"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's knobs (small defaults so it runs in a few minutes on 2 cores)."""

    out: Path
    rows: int = 200_000
    seed: int = 0
    epochs: int = 3
    users: int = 3
    k: int = 10
    model_name: str = "ctr"


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(argv: Sequence[str], *, ok: frozenset[int] = frozenset({0}), who: str = "demo") -> int:
    """Run one command line, echoing it; an exit code outside ``ok`` stops the demo (``who`` names
    it in the message). Returns the exit code, for commands whose non-zero codes are findings."""
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    started = time.perf_counter()
    code = subprocess.run(list(argv), cwd=REPO).returncode
    if code not in ok:
        raise SystemExit(f"{who}: step failed (exit {code}): {' '.join(argv)}")
    exit_note = "" if ok == {0} else f"exit {code}, "
    print(f"  ({exit_note}{time.perf_counter() - started:.1f} s)", flush=True)
    return code


def module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


def train_and_export(cfg: DemoConfig) -> dict[str, Path]:
    """Offline half: data, two models, evaluation, export, verification, recall artefacts."""
    paths = {
        "data": cfg.out / "data",
        "lr": cfg.out / "models" / "lr",
        "deepfm": cfg.out / "models" / "deepfm",
        "eval": cfg.out / "evaluation",
        "base": cfg.out / "serving",
        "recall": cfg.out / "recall",
    }
    step("1. synthetic data")
    if not (paths["data"] / "events.parquet").exists():
        run(
            module(
                "training.data.cli",
                "--rows",
                str(cfg.rows),
                "--seed",
                str(cfg.seed),
                "--out",
                str(paths["data"]),
            )
        )
    step("2. train LR and DeepFM (re-running resumes from the last epoch checkpoint)")
    for name in ("lr", "deepfm"):
        run(
            module(
                "training.cli",
                "--data",
                "synthetic",
                "--data-path",
                str(paths["data"]),
                "--model",
                name,
                "--epochs",
                str(cfg.epochs),
                "--batch-size",
                "1024",
                "--seed",
                str(cfg.seed),
                "--out",
                str(paths[name]),
                "--quiet",
            )
        )
    step("3. offline evaluation (AUC, GAUC, logloss, calibration, NDCG@10, gap to the oracle)")
    run(
        module(
            "training.evaluate",
            "--model",
            str(paths["lr"]),
            "--model",
            str(paths["deepfm"]),
            "--split",
            "test",
            "--out",
            str(paths["eval"]),
        )
    )
    step("4. export DeepFM for TF Serving and verify it")
    version_dir = paths["base"] / cfg.model_name / "1"
    if not version_dir.exists():
        run(
            module(
                "export.cli",
                "export",
                "--model-dir",
                str(paths["deepfm"]),
                "--base",
                str(paths["base"]),
                "--name",
                cfg.model_name,
                "--version",
                "1",
            )
        )
    run(module("export.cli", "verify", str(version_dir), "--model-dir", str(paths["deepfm"])))
    step("5. recall artefacts from the same interaction logs")
    run(
        module(
            "recommender_client.recall.build",
            "--data-dir",
            str(paths["data"]),
            "--contract",
            str(paths["deepfm"]),
            "--out",
            str(paths["recall"]),
        )
    )
    return paths


def serve_and_recommend(cfg: DemoConfig, paths: dict[str, Path]) -> None:
    """Online half: model server + two ranking services (gRPC and REST), a few users, stop all."""
    grpc_port, rest_port = free_port(), free_port()
    logs = cfg.out / "logs"
    model_server = Server(
        "model server",
        module(
            "serving.model_server",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_name={cfg.model_name}",
            f"--model_base_path={paths['base'] / cfg.model_name}",
            "--bind_address=127.0.0.1",
            "--enable_model_warmup=true",
        ),
        logs / "model_server.log",
    )
    as_of = json.loads((paths["recall"] / "manifest.json").read_text())["as_of"]
    rankers = {}
    for protocol in ("grpc", "rest"):
        port = free_port()
        rankers[protocol] = (
            port,
            Server(
                f"ranking service ({protocol})",
                module(
                    "recommender_client.service",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--artifacts-dir",
                    str(paths["recall"]),
                    "--rules",
                    str(DEFAULT_RULES),
                    "--protocol",
                    protocol,
                    "--grpc-target",
                    f"127.0.0.1:{grpc_port}",
                    "--rest-url",
                    f"http://127.0.0.1:{rest_port}",
                    "--model-name",
                    cfg.model_name,
                    "--skew-log",
                    str(logs / f"skew_{protocol}.jsonl"),
                ),
                logs / f"ranker_{protocol}.log",
                env={"RANKER_FIXED_NOW": str(as_of)},
            ),
        )
    servers = [model_server] + [server for _, server in rankers.values()]
    try:
        step(f"6. embedded model server: gRPC 127.0.0.1:{grpc_port}, REST 127.0.0.1:{rest_port}")
        model_server.start().wait_http_ok(f"http://127.0.0.1:{rest_port}/v1/models/{cfg.model_name}")
        print(json.dumps(http_json("GET", f"http://127.0.0.1:{rest_port}/v1/models/{cfg.model_name}")[1]))
        for protocol, (port, server) in rankers.items():
            step(f"7. ranking service over {protocol} on 127.0.0.1:{port}")
            server.start().wait_http_ok(f"http://127.0.0.1:{port}/readyz")
            for user in _demo_users(paths["data"], cfg.users):
                body = {
                    "user_id": user,
                    "k": cfg.k,
                    "context": {"hour": 20, "device": "mobile", "position": 1},
                }
                status, answer = http_json("POST", f"http://127.0.0.1:{port}/recommend", body)
                if status != 200:
                    raise SystemExit(f"demo: /recommend answered {status}: {answer}")
                _print_ranking(answer)
    finally:
        for server in reversed(servers):
            server.stop()
        print("\nstopped the model server and the ranking services", flush=True)


def _demo_users(data_dir: Path, count: int) -> list[str]:
    """The most active users of the logs, plus one the service has never seen (cold start)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = pc.value_counts(pq.read_table(data_dir / "events.parquet", columns=["user_id"])["user_id"])
    ranked = sorted(counts.to_pylist(), key=lambda c: (-c["counts"], c["values"]))
    return [str(c["values"]) for c in ranked[: max(count - 1, 0)]] + ["never-seen-user"]


def _print_ranking(answer: dict) -> None:
    flags = []
    if answer["degraded"]:
        flags.append(f"DEGRADED ({answer['degraded_reason']})")
    if answer["cold_start"]:
        flags.append("cold start")
    print(
        f"\nuser {answer['user_id']}: {answer['candidates']} candidates, {answer['took_ms']:.1f} ms {' '.join(flags)}"
    )
    print(f"  {'pos':>3}  {'item':<10} {'score':>7} {'was':>4}  {'source':<20} rules")
    for item in answer["items"]:
        score = "-" if item["score"] is None else f"{item['score']:.4f}"
        was = "-" if item["pre_rerank_position"] is None else str(item["pre_rerank_position"])
        print(
            f"  {item['position']:>3}  {item['item_id']:<10} {score:>7} {was:>4}  {item['recall_source']:<20} {', '.join(item['rules'])}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "demo", help="working directory")
    parser.add_argument("--rows", type=int, default=DemoConfig.rows, help="synthetic events to generate")
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs, help="training epochs per model")
    parser.add_argument("--seed", type=int, default=DemoConfig.seed, help="data and model seed")
    args = parser.parse_args(argv)
    cfg = DemoConfig(out=args.out.resolve(), rows=args.rows, epochs=args.epochs, seed=args.seed)
    started = time.perf_counter()
    paths = train_and_export(cfg)
    serve_and_recommend(cfg, paths)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; artefacts in {cfg.out}")
    return 0

"""Encode/decode cost of TF Serving tensors: our TensorFlow-free codec vs tf.make_tensor_proto.

Each implementation runs in its own fresh interpreter (ours must never see TensorFlow; TF's
import would also distort the other's timings), on identical data from one seed, and prints
JSON; this process prints the table. Usage::

    .venv/bin/python benchmarks/bench_client_encoding.py [--rows 500] [--repeats 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

# A request shaped like the CTR model's: string ids and categories, int ids, floats, one list.
FEATURES = {
    "user_id": "string",
    "user_country": "string",
    "user_device": "string",
    "item_category": "string",
    "item_brand": "string",
    "item_tags": "string",
    "item_id": "int64",
    "hour_of_day": "int64",
    "item_age_days": "int64",
    "item_price": "float32",
    "item_ctr_7d": "float32",
    "user_ctr_30d": "float32",
    "user_age": "float32",
}


def make_columns(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic feature columns of ``rows`` values each, in wire dtypes."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for name, dtype in FEATURES.items():
        if dtype == "float32":
            columns[name] = rng.normal(size=rows).astype(np.float32)
        elif dtype == "int64":
            columns[name] = rng.integers(0, 10**9, size=rows, dtype=np.int64)
        else:
            values = [f"{name}_{v}" for v in rng.integers(0, 5000, size=rows)]
            if name == "item_tags":
                values = [f"{v}|t{i % 7}|t{i % 11}" for i, v in enumerate(values)]
            columns[name] = np.array(values, dtype=object)
    return columns


def measure(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median and p99 of ``fn`` in microseconds after a short warm-up."""
    for _ in range(min(100, repeats)):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return {"median_us": float(np.median(times) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6)}


def run_ours(rows: int, repeats: int, seed: int) -> dict[str, object]:
    from recommender_client.client.messages import build_predict_request, outputs_to_arrays
    from recommender_client.client.tensors import decode_tensor, tensor_proto
    from recommender_client.protos import predict_pb2

    columns = make_columns(rows, seed)
    response = predict_pb2.PredictResponse()
    response.outputs["ctr"].CopyFrom(tensor_proto(columns["item_ctr_7d"]))
    response_bytes = response.SerializeToString()
    results = {
        "request": measure(
            lambda: build_predict_request(columns, model_name="ctr").SerializeToString(), repeats
        ),
        "float32 tensor": measure(lambda: tensor_proto(columns["item_price"]), repeats),
        "int64 tensor": measure(lambda: tensor_proto(columns["item_id"]), repeats),
        "string tensor": measure(lambda: tensor_proto(columns["item_category"]), repeats),
        "decode response": measure(
            lambda: outputs_to_arrays(predict_pb2.PredictResponse.FromString(response_bytes).outputs), repeats
        ),
        "decode float32": measure(lambda: decode_tensor(response.outputs["ctr"]), repeats),
    }
    tf_loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_serving"))
    return {"results": results, "tensorflow_modules": tf_loaded}


def run_tf(rows: int, repeats: int, seed: int) -> dict[str, object]:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    columns = make_columns(rows, seed)

    def request() -> bytes:
        message = predict_pb2.PredictRequest()
        message.model_spec.name = "ctr"
        message.model_spec.signature_name = "serving_default"
        for name, array in columns.items():
            message.inputs[name].CopyFrom(tf.make_tensor_proto(array))
        return message.SerializeToString()

    response = predict_pb2.PredictResponse()
    response.outputs["ctr"].CopyFrom(tf.make_tensor_proto(columns["item_ctr_7d"]))
    response_bytes = response.SerializeToString()

    def decode() -> dict[str, np.ndarray]:
        parsed = predict_pb2.PredictResponse.FromString(response_bytes)
        return {k: tf.make_ndarray(v) for k, v in parsed.outputs.items()}

    results = {
        "request": measure(request, repeats),
        "float32 tensor": measure(lambda: tf.make_tensor_proto(columns["item_price"]), repeats),
        "int64 tensor": measure(lambda: tf.make_tensor_proto(columns["item_id"]), repeats),
        "string tensor": measure(lambda: tf.make_tensor_proto(columns["item_category"]), repeats),
        "decode response": measure(decode, repeats),
        "decode float32": measure(lambda: tf.make_ndarray(response.outputs["ctr"]), repeats),
    }
    return {"results": results, "tensorflow_modules": ["tensorflow"]}


def child(impl: str, rows: int, repeats: int, seed: int) -> dict[str, object]:
    """Run one implementation in a fresh interpreter and read its JSON."""
    command = [sys.executable, __file__, "--impl", impl, "--rows", str(rows), "--repeats", str(repeats)]
    command += ["--seed", str(seed)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--impl", choices=["ours", "tf"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.impl:
        run = run_ours if args.impl == "ours" else run_tf
        print(json.dumps(run(args.rows, args.repeats, args.seed)))
        return 0
    ours = child("ours", args.rows, args.repeats, args.seed)
    theirs = child("tf", args.rows, args.repeats, args.seed)
    if ours["tensorflow_modules"]:
        raise SystemExit(f"our codec loaded TensorFlow: {ours['tensorflow_modules'][:5]}")
    print(f"rows={args.rows} repeats={args.repeats} features={len(FEATURES)} (ours ran without TensorFlow)")
    header = (
        f"{'case':<16} {'ours p50':>10} {'ours p99':>10} {'tf p50':>10} {'tf p99':>10} {'tf/ours p50':>12}"
    )
    print(header)
    print("-" * len(header))
    for case, mine in ours["results"].items():
        tf_stats = theirs["results"][case]
        ratio = tf_stats["median_us"] / mine["median_us"]
        print(
            f"{case:<16} {mine['median_us']:>8.1f}us {mine['p99_us']:>8.1f}us "
            f"{tf_stats['median_us']:>8.1f}us {tf_stats['p99_us']:>8.1f}us {ratio:>11.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

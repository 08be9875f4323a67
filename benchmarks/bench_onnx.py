"""ONNX Runtime (host preprocessing + core) against the SavedModel's serving_default, per batch size.

Prints a Markdown table of median and p99 latency per call; the numbers go into notes and docs,
never into asserts.

    python benchmarks/bench_onnx.py                      # synthetic data, untrained DeepFM
    python benchmarks/bench_onnx.py --model-dir runs/demo/model --repeats 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH_SIZES = (1, 100, 500, 2000)


def _timed(fn: Callable[[], Any], repeats: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    seconds = np.empty(repeats)
    for i in range(repeats):
        started = time.perf_counter()
        fn()
        seconds[i] = time.perf_counter() - started
    return seconds * 1000.0


def _model_and_frame(args: argparse.Namespace, workdir: Path) -> tuple[Any, Any, Any]:
    import pandas as pd

    from training.data import load_source

    if args.model_dir is not None:
        from export.run_dir import load_split, load_training_run

        run = load_training_run(args.model_dir)
        frames = [load_split(run.config, s) for s in ("test", "valid", "train")]
        return run.model, run.contract, pd.concat(frames, ignore_index=True)
    from training.models import build_model

    splits = load_source("synthetic", None, num_rows=20_000, seed=0, cache_dir=str(workdir / "data"))
    frame = pd.concat([splits.test, splits.valid, splits.train], ignore_index=True)
    return build_model(args.model, splits.contract, seed=0), splits.contract, frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="a training run (default: untrained model)"
    )
    parser.add_argument("--model", default="deepfm", help="zoo model when no --model-dir is given")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per batch size and route")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = ORT default)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from export.batches import frame_inputs, take_rows
    from export.onnx_export import OnnxScorer, check_parity, export_onnx
    from export.saved_model import export_saved_model
    from export.scoring import load_saved_model, score_saved_model, to_tensors

    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        workdir = Path(tmp)
        model, contract, frame = _model_and_frame(args, workdir)
        version_dir = export_saved_model(model, contract, workdir / "models", "ctr")
        onnx_path = export_onnx(model, contract, workdir / "core.onnx")
        loaded = load_saved_model(version_dir)
        serve = loaded.signatures["serving_default"]
        scorer = OnnxScorer(onnx_path, contract)
        if args.threads:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            scorer.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        inputs = frame_inputs(frame, contract)
        parity_rows = take_rows(inputs, np.arange(min(10_000, len(frame))))
        parity = check_parity(
            scorer, score_saved_model(version_dir, contract, parity_rows, loaded=loaded), parity_rows
        )

        print(f"model: {model.name}, {len(contract.features)} features; tf {tf.__version__}")
        print(f"parity on {parity.rows} rows: max abs diff {parity.max_abs_diff:.3g}")
        print(
            f"{args.repeats} timed calls per cell (after {args.warmup} warmup calls); milliseconds per call\n"
        )
        header = (
            "| batch | SavedModel median | SavedModel p99 | ORT total median | ORT total p99 "
            "| host preprocess median | ORT core median | SavedModel / ORT total |"
        )
        print(header)
        print("|" + "---|" * 8)
        for size in BATCH_SIZES:
            batch = take_rows(inputs, np.arange(size) % len(frame))
            tensors = to_tensors(contract, batch)
            feeds = scorer.preprocess(batch)
            saved = _timed(lambda t=tensors: serve(**t)["ctr"].numpy(), args.repeats, args.warmup)
            total = _timed(lambda b=batch: scorer(b), args.repeats, args.warmup)
            host = _timed(lambda b=batch: scorer.preprocess(b), args.repeats, args.warmup)
            core = _timed(lambda f=feeds: scorer.run_core(f), args.repeats, args.warmup)
            med = np.median
            print(
                f"| {size} | {med(saved):.3f} | {np.percentile(saved, 99):.3f} | {med(total):.3f} "
                f"| {np.percentile(total, 99):.3f} | {med(host):.3f} | {med(core):.3f} "
                f"| {med(saved) / med(total):.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

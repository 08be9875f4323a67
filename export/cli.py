"""``python -m export.cli export|verify|publish|onnx``: the export commands (console script recsys-export).

Exit codes: 0 success; 1 an error (missing model directory, existing version, contract mismatch,
bad version, unwritable base path, bad data); 2 bad command-line usage (argparse); 3 the model
failed verification or the blessing gate rejected it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_ERROR = 1
EXIT_REJECTED = 3


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="data source (default: the run's config.json)")
    parser.add_argument("--data-path", default=None, help="data path (default: the run's config.json)")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"), help="held-out split")


def _add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir", required=True, type=Path, help="training run directory (model.keras, ...)"
    )
    parser.add_argument(
        "--base", required=True, type=Path, help="base path; versions go to <base>/<name>/<version>"
    )
    parser.add_argument("--name", required=True, help="served model name (TF Serving --model_name)")
    parser.add_argument("--version", default=None, help="positive integer version (default: latest + 1)")
    parser.add_argument(
        "--contract", default=None, type=Path, help="feature contract to use instead of the run's"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys-export", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a trained model as a TF Serving SavedModel version")
    _add_target_args(p)
    _add_data_args(p)
    p.add_argument("--no-warmup", action="store_true", help="write no warmup records (no data needed)")

    p = sub.add_parser("verify", help="verify an exported version and print its signatures")
    p.add_argument("version_dir", type=Path, help="<base>/<name>/<version>")
    p.add_argument("--model-dir", type=Path, default=None, help="training run: Keras model for parity, data")
    _add_data_args(p)
    p.add_argument("--min-rows", type=int, default=10_000, help="held-out rows needed for parity")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")

    p = sub.add_parser("publish", help="export, verify and publish only if AUC does not regress")
    _add_target_args(p)
    _add_data_args(p)
    p.add_argument("--tolerance", type=float, default=0.0, help="largest accepted AUC drop vs the latest")
    p.add_argument("--force", action="store_true", help="publish despite an AUC regression")
    p.add_argument("--reason", default="", help="why --force is used (required with --force)")
    p.add_argument("--min-rows", type=int, default=10_000, help="held-out rows needed for parity")
    p.add_argument(
        "--mlflow-uri",
        default=None,
        help="register a blessed version in this MLflow registry (default: MLFLOW_TRACKING_URI; "
        "unset: none), e.g. sqlite:///mlflow.db",
    )

    p = sub.add_parser("onnx", help="export the numeric core to ONNX and check parity with the SavedModel")
    p.add_argument("--model-dir", required=True, type=Path, help="training run directory")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--version-dir", type=Path, default=None, help="exported SavedModel to compare with")
    p.add_argument("--rows", type=int, default=10_000, help="rows for the parity check")
    p.add_argument("--opset", type=int, default=17)
    _add_data_args(p)
    return parser


def held_out_frame(config: dict[str, Any], args: argparse.Namespace, min_rows: int = 0) -> Any:
    """The chosen split; if it has fewer than ``min_rows`` rows, valid and test together."""
    import pandas as pd

    from export.run_dir import load_split

    frame = load_split(config, args.split, source=args.data, data_path=args.data_path)
    if len(frame) < min_rows and args.split == "test":
        valid = load_split(config, "valid", source=args.data, data_path=args.data_path)
        frame = pd.concat([valid, frame], ignore_index=True)
    return frame


def parity_frame(config: dict[str, Any], args: argparse.Namespace, rows: int) -> Any:
    """``rows`` rows for a parity check: the chosen split first, then the others (labels unused)."""
    import pandas as pd

    from export.run_dir import SPLITS, load_split

    order = [args.split, *[s for s in reversed(SPLITS) if s != args.split]]
    frames = []
    for split in order:
        frames.append(load_split(config, split, source=args.data, data_path=args.data_path))
        if sum(len(f) for f in frames) >= rows:
            break
    return pd.concat(frames, ignore_index=True).head(rows)


def _cmd_export(args: argparse.Namespace) -> int:
    from export.run_dir import load_training_run
    from export.saved_model import export_saved_model

    run = load_training_run(args.model_dir, contract_path=args.contract)
    warmup = None if args.no_warmup else held_out_frame(run.config, args).head(1000)
    path = export_saved_model(
        run.model,
        run.contract,
        args.base,
        args.name,
        args.version,
        warmup_frame=warmup,
        model_card=run.model_card(),
    )
    print(f"exported {path}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from export.run_dir import load_training_run
    from export.verify import verify_export
    from training.atomic_files import atomic_write_text

    run = load_training_run(args.model_dir) if args.model_dir is not None else None
    frame = None
    if run is not None or args.data is not None:
        frame = held_out_frame(run.config if run else {}, args, args.min_rows)
    report = verify_export(
        args.version_dir, keras_model=run.model if run else None, frame=frame, min_rows=args.min_rows
    )
    print(report.signatures_text)
    print(report.summary())
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else EXIT_REJECTED


def _cmd_publish(args: argparse.Namespace) -> int:
    from export.publish import publish_model
    from export.run_dir import load_training_run

    run = load_training_run(args.model_dir, contract_path=args.contract)
    frame = held_out_frame(run.config, args, args.min_rows)
    result = publish_model(
        run.model,
        run.contract,
        args.base,
        args.name,
        eval_frame=frame,
        version=args.version,
        tolerance=args.tolerance,
        force=args.force,
        force_reason=args.reason,
        model_card=run.model_card(),
        min_rows=args.min_rows,
    )
    record = result.record
    baseline = record["baseline"]
    print(f"{record['decision']}: {record['reason']}")
    print(f"candidate v{result.version}: AUC {record['candidate']['auc']:.6f}")
    if baseline is not None:
        print(f"latest    v{baseline['version']}: AUC {baseline['auc']:.6f}")
    print(f"record: {result.record_path}")
    if result.path is not None:
        print(f"published {result.path}")
        from export.mlflow_model import register_blessed, tracking_uri

        uri = tracking_uri(args.mlflow_uri)
        if uri is not None:
            registered = register_blessed(result.path, record, model_name=args.name, uri=uri)
            print(f"registered in MLflow ({uri}): models:/{registered.name}/{registered.version}")
    return 0 if result.blessed else EXIT_REJECTED


def _cmd_onnx(args: argparse.Namespace) -> int:
    from export.batches import frame_inputs
    from export.onnx_export import OnnxScorer, check_parity, export_onnx
    from export.run_dir import load_training_run
    from export.scoring import score_saved_model

    run = load_training_run(args.model_dir)
    path = export_onnx(run.model, run.contract, args.out, opset=args.opset)
    print(f"wrote {path} (onnx.checker passed)")
    if args.version_dir is not None:
        frame = parity_frame(run.config, args, args.rows)
        inputs = frame_inputs(frame, run.contract)
        expected = score_saved_model(args.version_dir, run.contract, inputs)
        try:
            parity = check_parity(OnnxScorer(path, run.contract), expected, inputs)
        except AssertionError as exc:
            print(f"ONNX parity FAILED against {args.version_dir}:\n{exc}")
            return EXIT_REJECTED
        print(
            f"ONNX parity with {args.version_dir} on {parity.rows} rows: max abs diff {parity.max_abs_diff:.3g} "
            f"(rtol {parity.rtol:g}, atol {parity.atol:g})"
        )
    return 0


_COMMANDS = {"export": _cmd_export, "verify": _cmd_verify, "publish": _cmd_publish, "onnx": _cmd_onnx}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are printed as one line on stderr with a non-zero exit code."""
    from export.errors import ExportError
    from training.features import ContractError

    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (ExportError, ContractError, ValueError, OSError) as exc:
        print(f"recsys-export {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

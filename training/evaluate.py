"""Offline evaluation of CTR models: every metric for one model on one split, and the CLI."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training import metrics as m
from training.features import CONTRACT_FILENAME, FeatureContract, FeatureKind

MODEL_FILENAME = "model.keras"
CONFIG_FILENAME = "config.json"
SCORE_BATCH_SIZE = 4096
CURVE_POINTS = 200
MAX_ERROR_CHARS = 600
# Per-user metrics, None without a user column; the ``_long`` ones skip users with <= k rows.
RANKED_KEYS = ("gauc", "ndcg", "hit_rate", "ndcg_long", "hit_rate_long")


class EvaluationError(ValueError):
    """A model directory, its files or the requested data cannot be used for evaluation."""


def _attempt(undefined: dict[str, str], key: str, compute: Callable[[], Any]) -> Any:
    """Run ``compute``; when the metric is undefined on this data, record why and return None."""
    try:
        return compute()
    except m.MetricError as exc:
        undefined[key] = str(exc)
        return None


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> dict[str, list[float]]:
    """Keep about ``points`` evenly spaced curve points (always the ends) so JSON stays small."""
    keep = np.unique(np.linspace(0, x.shape[0] - 1, min(points, x.shape[0])).round().astype(int))
    return {"fpr": x[keep].tolist(), "tpr": y[keep].tolist()}


def _core_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    users: np.ndarray | None,
    p_true: np.ndarray | None,
    *,
    k: int,
    n_bins: int,
    bin_strategy: m.BinStrategy,
    strict: bool,
) -> dict[str, Any]:
    """Scalar metrics of one (sub)set of rows. ``strict`` lets AUC/logloss errors propagate."""
    undefined: dict[str, str] = {}
    out: dict[str, Any] = {
        "rows": int(labels.shape[0]),
        "positives": int(labels.sum()),
        "observed_ctr": float(labels.mean()) if labels.shape[0] else None,
        "mean_prediction": float(probs.mean()) if probs.shape[0] else None,
    }
    if labels.shape[0] == 0:
        return (
            out
            | dict.fromkeys(RANKED_KEYS + ("auc", "gauc", "logloss", "ece"), None)
            | {"undefined": {"all": "slice has no rows"}}
        )

    def guarded(key: str, compute: Callable[[], Any]) -> Any:
        return compute() if strict else _attempt(undefined, key, compute)

    out["auc"] = guarded("auc", lambda: m.auc(labels, probs))
    out["logloss"] = guarded("logloss", lambda: m.logloss(labels, probs))
    out["ece"] = m.expected_calibration_error(labels, probs, n_bins=n_bins, strategy=bin_strategy)
    if users is None:
        out |= dict.fromkeys(RANKED_KEYS, None)
        undefined |= dict.fromkeys(RANKED_KEYS[:3], "no user column")
    else:
        per = m.per_group_auc(labels, probs, users)
        counted = ~np.isnan(per["auc"])
        out["gauc_users"] = int(counted.sum())
        out["gauc_users_skipped"] = int((~counted).sum())
        out["gauc"] = _attempt(undefined, "gauc", lambda: m.gauc(labels, probs, users))
        ranking = _attempt(undefined, "ndcg", lambda: m.ranking_quality(labels, probs, users, k=k))
        out["ndcg"] = ranking.ndcg if ranking else None
        out["hit_rate"] = ranking.hit_rate if ranking else None
        out["ranking_users"] = ranking.users if ranking else 0
        # users with <= k rows have HR@k = 1 by construction: reported apart (metrics.RankingQuality)
        out["ranking_short_users"] = ranking.short_users if ranking else 0
        out["ndcg_long"] = ranking.long_ndcg if ranking else None
        out["hit_rate_long"] = ranking.long_hit_rate if ranking else None
        if ranking is None:
            undefined["hit_rate"] = undefined["ndcg"]
    if p_true is not None:
        out["oracle_auc"] = _attempt(undefined, "oracle_auc", lambda: m.auc(labels, p_true))
        out["oracle_logloss"] = m.logloss(labels, p_true)
        both = out["oracle_auc"] is not None and out["auc"] is not None
        out["oracle_gap"] = out["oracle_auc"] - out["auc"] if both else None
    if undefined:
        out["undefined"] = undefined
    return out


def _column(frame: pd.DataFrame, name: str, where: str) -> np.ndarray:
    if name not in frame.columns:
        raise m.MetricError(f"{where}: missing column {name!r} (have {list(frame.columns)[:20]})")
    return frame[name].to_numpy()


def evaluate_predictions(
    frame: pd.DataFrame,
    scores: Any,
    *,
    train_frame: pd.DataFrame | None = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    label_col: str = "label",
    k: int = 10,
    n_bins: int = 10,
    bin_strategy: m.BinStrategy = "uniform",
) -> dict[str, Any]:
    """Every offline metric for one model's predicted click probabilities on one split.

    Returns a JSON-ready dict: counts, AUC, GAUC, logloss, ECE, NDCG@k / HitRate@k (per user,
    only when ``user_col`` exists; each user's logged rows are ranked, and ``ndcg_long`` /
    ``hit_rate_long`` leave out the ``ranking_short_users`` with k rows or fewer, whose HitRate@k
    is 1 by construction), mean predicted vs observed CTR, the reliability curve and a
    thinned ROC curve; with a ``p_true`` column (synthetic data) the oracle AUC and the model's
    gap to it (``oracle_auc - auc``); with ``train_frame`` the same scalars per slice
    (``user_new``: users never seen in training, ``user_returning``, ``item_new``,
    ``item_returning``). Metrics undefined on a slice (say a single class) are None, with the
    reason under ``undefined``.

    Raises:
        MetricError: on a missing label column, a length mismatch, non-probability scores, or a
            split where AUC itself is undefined (a single class).
    """
    labels = _column(frame, label_col, "evaluation frame")
    probs = np.asarray(scores, dtype=np.float64).reshape(-1)
    if probs.shape[0] != len(frame):
        raise m.MetricError(f"got {probs.shape[0]} scores for {len(frame)} evaluation rows")
    labels, probs = m.check_probabilities(labels, probs)
    users = frame[user_col].to_numpy() if user_col in frame.columns else None
    p_true = None
    if "p_true" in frame.columns:
        p_true = m.check_probabilities(labels, frame["p_true"].to_numpy())[1]
    options = {"k": k, "n_bins": n_bins, "bin_strategy": bin_strategy}
    result = _core_metrics(labels, probs, users, p_true, strict=True, **options)
    result["k"] = k
    result["calibration_ratio"] = (
        result["mean_prediction"] / result["observed_ctr"] if result["observed_ctr"] else None
    )
    result["reliability"] = m.reliability_curve(labels, probs, n_bins=n_bins, strategy=bin_strategy).to_dict()
    fpr, tpr, _ = m.roc_curve(labels, probs)
    result["roc"] = _thin(fpr, tpr, CURVE_POINTS)
    if p_true is not None:
        fpr, tpr, _ = m.roc_curve(labels, p_true)
        result["oracle_roc"] = _thin(fpr, tpr, CURVE_POINTS)
    if train_frame is not None:
        result["slices"] = {}
        for entity, column in (("user", user_col), ("item", item_col)):
            if column not in frame.columns:
                continue
            fresh = m.new_mask(frame[column].to_numpy(), _column(train_frame, column, "training frame"))
            for name, mask in ((f"{entity}_new", fresh), (f"{entity}_returning", ~fresh)):
                sub_users = users[mask] if users is not None else None
                sub_true = p_true[mask] if p_true is not None else None
                result["slices"][name] = _core_metrics(
                    labels[mask], probs[mask], sub_users, sub_true, strict=False, **options
                )
    return result


# ----------------------------------------------------------------------------------------- scoring


def frame_inputs(frame: pd.DataFrame, contract: FeatureContract) -> dict[str, np.ndarray]:
    """The model's inputs as numpy arrays of their wire dtypes, checked against the contract."""
    contract.validate_columns(frame.columns, source="evaluation frame")
    inputs: dict[str, np.ndarray] = {}
    for feature in contract.features:
        column = frame[feature.name]
        try:
            if feature.kind is FeatureKind.NUMERIC:
                inputs[feature.name] = column.to_numpy(dtype=np.float32)
            elif feature.kind is FeatureKind.CATEGORICAL_INT:
                inputs[feature.name] = column.to_numpy(dtype=np.int64)
            else:
                inputs[feature.name] = column.astype(str).to_numpy(dtype=object)
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"column {feature.name!r} is not {feature.dtype}: {exc}") from exc
    return inputs


def score_frame(
    model: Any, frame: pd.DataFrame, contract: FeatureContract, *, batch_size: int = SCORE_BATCH_SIZE
) -> np.ndarray:
    """Predicted click probabilities for every row, in batches through ``model.predict``."""
    import tensorflow as tf

    inputs = frame_inputs(frame, contract)
    tensors = {
        f.name: tf.constant(inputs[f.name], dtype=tf.string if f.dtype == "string" else f.dtype)
        for f in contract.features
    }
    dataset = tf.data.Dataset.from_tensor_slices(tensors).batch(batch_size)
    scores = np.asarray(model.predict(dataset, verbose=0), dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(frame):
        raise EvaluationError(f"model returned {scores.shape[0]} scores for {len(frame)} rows")
    return scores


@dataclass(frozen=True)
class ModelRun:
    """One training output directory: its model name, seed and training config (if saved)."""

    name: str
    seed: int | None
    path: Path
    config: dict[str, Any]


def describe_run(spec: str) -> ModelRun:
    """Parse ``DIR`` or ``NAME=DIR``; the name defaults to ``config.json``'s model, else DIR's name.

    Runs sharing a name are seeds of one model and get reported as mean ± std.
    """
    name, sep, path_text = spec.partition("=")
    if not sep:
        name, path_text = "", spec
    path = Path(path_text)
    for required in (MODEL_FILENAME, CONTRACT_FILENAME):
        if not (path / required).is_file():
            raise FileNotFoundError(f"model directory {path} has no {required}")
    config: dict[str, Any] = {}
    if (path / CONFIG_FILENAME).is_file():
        try:
            config = json.loads((path / CONFIG_FILENAME).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{path / CONFIG_FILENAME} is not valid JSON: {exc}") from exc
    seed = config.get("seed")
    if seed is None:
        found = re.search(r"seed[_-]?(\d+)$", path.name)
        seed = int(found.group(1)) if found else None
    return ModelRun(name=name or str(config.get("model") or path.name), seed=seed, path=path, config=config)


def _data_settings(
    args: argparse.Namespace, runs: Sequence[ModelRun]
) -> tuple[str, str | None, dict[str, Any]]:
    """The data to evaluate on: the flags, else what every model was trained on (they must agree)."""

    def agreed(key: str) -> Any:
        values = {json.dumps(r.config.get(key), sort_keys=True) for r in runs if key in r.config}
        if len(values) > 1:
            raise EvaluationError(
                f"models were trained with different {key!r} ({sorted(values)}); pass it explicitly"
            )
        return json.loads(values.pop()) if values else None

    source = args.data or agreed("data")
    if source is None:
        raise EvaluationError("no --data given and no model's config.json names its data source")
    path = args.data_path if args.data_path is not None else agreed("data_path")
    options = agreed("data_options") or {}
    for item in args.data_option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise EvaluationError(f"--data-option {item!r} must look like KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return source, path, options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys-evaluate", description=__doc__)
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="training output directory (model.keras + feature_contract.json); repeat it",
    )
    parser.add_argument(
        "--data",
        help="synthetic, movielens, criteo or a dataset spec .yaml (default: what the models were trained on)",
    )
    parser.add_argument("--data-path", help="data location for movielens/criteo")
    parser.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help="extra load_source option (JSON value), e.g. num_rows=20000",
    )
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--out", required=True, help="report directory (JSON, Markdown, PNG)")
    parser.add_argument("--batch-size", type=int, default=SCORE_BATCH_SIZE)
    parser.add_argument("--k", type=int, default=10, help="cut-off for NDCG@k and HitRate@k")
    parser.add_argument("--bins", type=int, default=10, help="calibration bins")
    parser.add_argument("--bin-strategy", choices=("uniform", "quantile"), default="uniform")
    parser.add_argument(
        "--mlflow-uri",
        help="log the evaluation to this MLflow tracking URI (default: MLFLOW_TRACKING_URI; unset: none)",
    )
    return parser


def load_model(path: Path) -> Any:
    """``load_keras_model`` of ``path/model.keras``.

    Keras's own error quotes the whole model config (vocabularies included), so it is cut short.
    """
    from training.layers import load_keras_model

    try:
        return load_keras_model(path / MODEL_FILENAME)
    except Exception as exc:  # keras raises TypeError/ValueError/OSError for unloadable files
        text = str(exc)
        short = text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " ..."
        raise EvaluationError(f"cannot load {path / MODEL_FILENAME}: {type(exc).__name__}: {short}") from exc


def run_evaluation(
    runs: Sequence[ModelRun],
    frame: pd.DataFrame,
    *,
    train_frame: pd.DataFrame | None,
    batch_size: int = SCORE_BATCH_SIZE,
    **options: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Load each model in turn, score ``frame`` and evaluate; results grouped by model name."""
    results: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        model = load_model(run.path)
        contract = FeatureContract.load(run.path)
        scores = score_frame(model, frame, contract, batch_size=batch_size)
        result = evaluate_predictions(
            frame, scores, train_frame=train_frame, label_col=contract.label, **options
        )
        result["model_dir"], result["seed"] = str(run.path), run.seed
        results.setdefault(run.name, []).append(result)
        del model
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``recsys-evaluate``: score models on one split, write the report and print its table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.k < 1 or args.bins < 1:
        parser.error("--batch-size, --k and --bins must be >= 1")
    from training import report

    try:
        runs = [describe_run(spec) for spec in args.model]
        source, path, data_options = _data_settings(args, runs)
        from training.data import load_source
        from training.data.splits import split_summary

        splits = load_source(source, path, **data_options)
        frame = splits.test if args.split == "test" else splits.valid
        results = run_evaluation(
            runs,
            frame,
            train_frame=splits.train,
            batch_size=args.batch_size,
            k=args.k,
            n_bins=args.bins,
            bin_strategy=args.bin_strategy,
        )
        summary = report.compare(results)
        summary["data"] = {"source": source, "path": path, "options": data_options, "split": args.split}
        summary["data"] |= split_summary(splits, frame)  # how it was cut, share of new users/items
        written = report.write_report(results, args.out, summary=summary)
        from training.tracking import log_evaluation, tracking_uri

        log_evaluation(
            tracking_uri(args.mlflow_uri),
            out_dir=Path(args.out),
            params={"models": list(args.model), "split": args.split, "k": args.k, "data": summary["data"]},
            summary=summary,
            files=list(written.values()),
            contracts={run.name: run.path / CONTRACT_FILENAME for run in runs},
        )
    except (OSError, ValueError) as exc:
        print(f"recsys-evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(written["markdown"].read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

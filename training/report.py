"""Side-by-side comparison of evaluated models (mean ± std over seeds) as JSON, Markdown and PNG."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.atomic_files import atomic_path, atomic_write_text
from training.data.splits import split_note

# Scalars shown in the Markdown table: (result key, column header); "{k}" is the ranking cut-off.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("auc", "AUC"),
    ("gauc", "GAUC"),
    ("logloss", "Logloss"),
    ("ece", "ECE"),
    ("ndcg", "NDCG@{k}"),
    ("hit_rate", "HR@{k}"),
    ("ndcg_long", "NDCG@{k} >{k} rows"),
    ("hit_rate_long", "HR@{k} >{k} rows"),
    ("oracle_gap", "Gap to oracle AUC"),
)
SLICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rows", "Rows"),
    ("auc", "AUC"),
    ("logloss", "Logloss"),
    ("ece", "ECE"),
)
JSON_NAME, MARKDOWN_NAME, ROC_NAME, CALIBRATION_NAME = (
    "evaluation.json",
    "report.md",
    "roc.png",
    "calibration.png",
)


_NOT_METRICS = frozenset({"seed", "k"})


class ReportError(ValueError):
    """Results cannot be compared or reported (empty, or not from the same split)."""


def _scalars(result: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """Flatten the numeric scalars of one result (slices become ``user_new.auc`` and so on)."""
    out: dict[str, float | None] = {}
    for key, value in result.items():
        if key in _NOT_METRICS:
            continue
        if key == "slices" and isinstance(value, Mapping):
            for name, sub in value.items():
                out.update(_scalars(sub, f"{prefix}{name}."))
        elif value is None or (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)):
            out[prefix + key] = None if value is None else float(value)
    return out


def _mean_std(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample std (ddof=1; 0 for a single seed) over the seeds where the value is defined."""
    present = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if present.size == 0:
        return {"mean": None, "std": None, "n": 0}
    std = float(present.std(ddof=1)) if present.size > 1 else 0.0
    return {"mean": float(present.mean()), "std": std, "n": int(present.size)}


def compare(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Summarise several models, each evaluated with one or more seeds, on the same split.

    Every numeric scalar (including per-slice ones, as ``slice.metric``) becomes
    ``{"mean", "std", "n"}`` over the seeds where it is defined; std is the sample standard
    deviation (ddof=1), 0 for a single seed.

    Raises:
        ReportError: if there are no results, a model has no seeds, or the results do not share
            one split (different row or positive counts).
    """
    if not results:
        raise ReportError("nothing to compare: no model results")
    reference: tuple[str, int, Any, Any] | None = None
    models: dict[str, Any] = {}
    for name, seeds in results.items():
        if not seeds:
            raise ReportError(f"model {name!r} has no results")
        for index, result in enumerate(seeds):
            shape = (result.get("rows"), result.get("positives"))
            if reference is None:
                reference = (name, index, *shape)
            elif shape != reference[2:]:
                raise ReportError(
                    f"model {name!r} seed #{index} saw {shape[0]} rows / {shape[1]} positives but "
                    f"{reference[0]!r} seed #{reference[1]} saw {reference[2]} / {reference[3]}: not the same split"
                )
        flat = [_scalars(result) for result in seeds]
        keys = sorted({key for row in flat for key in row})
        models[name] = {
            "seeds": len(seeds),
            "seed_values": [result.get("seed") for result in seeds],
            "metrics": {key: _mean_std([row.get(key) for row in flat]) for key in keys},
        }
    assert reference is not None
    first = next(iter(results.values()))[0]
    k = first.get("k", 10)
    out = {"rows": reference[2], "positives": reference[3], "k": k, "models": models}
    if first.get("ranking_users"):
        out["ranking_protocol"] = ranking_protocol(first, k)
    return out


def ranking_protocol(result: Mapping[str, Any], k: int) -> str:
    """How NDCG@k/HR@k were computed, and how many users' HR@k is 1 by construction."""
    short, users = result.get("ranking_short_users", 0), result["ranking_users"]
    return (
        f"NDCG@{k} and HR@{k} rank each user's logged impressions in this split only, not the "
        f"catalogue. {short} of the {users} users with a click have {k} or fewer rows, so their "
        f"HR@{k} is 1 whatever the model; the '>{k} rows' columns leave them out."
    )


def _cell(stats: Mapping[str, Any] | None, digits: int) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    if digits == 0:
        return f"{stats['mean']:.0f}"
    if stats["n"] > 1:
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}"


def markdown_table(summary: Mapping[str, Any], *, digits: int = 4) -> str:
    """Models as rows, the headline metrics as columns (mean ± std when there are several seeds).

    The oracle column appears only when some model has it (synthetic data); a second table shows
    the new/returning slices when they were computed.
    """
    models = summary["models"]
    columns = [(key, header.format(k=summary.get("k", 10))) for key, header in TABLE_COLUMNS]
    columns = [
        c for c in columns if c[0] != "oracle_gap" or any(c[0] in v["metrics"] for v in models.values())
    ]
    lines = [
        "| Model | Seeds | " + " | ".join(h for _, h in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for name, entry in models.items():
        cells = [_cell(entry["metrics"].get(key), digits) for key, _ in columns]
        lines.append(f"| {name} | {entry['seeds']} | " + " | ".join(cells) + " |")
    slices = sorted({key.split(".")[0] for v in models.values() for key in v["metrics"] if "." in key})
    if slices:
        lines += [
            "",
            "| Model | Slice | " + " | ".join(h for _, h in SLICE_COLUMNS) + " |",
            "|---|---|" + "---:|" * len(SLICE_COLUMNS),
        ]
        for name, entry in models.items():
            for part in slices:
                cells = [
                    _cell(entry["metrics"].get(f"{part}.{key}"), 0 if key == "rows" else digits)
                    for key, _ in SLICE_COLUMNS
                ]
                lines.append(f"| {name} | {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become None so the file is strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write strict JSON atomically (temporary file in the same folder + rename)."""
    target = Path(path)
    atomic_write_text(target, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")
    return target


def _save_figure(figure: Any, path: Path) -> Path:
    """Render with the Agg canvas to a temporary PNG beside ``path``, then rename it into place."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


def plot_roc(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    oracle: Mapping[str, Sequence[float]] | None = None,
    aucs: Mapping[str, float] | None = None,
) -> Path:
    """One ROC curve per model (``{"fpr": [...], "tpr": [...]}``), plus the oracle's if known.

    Draws on a private Agg-backed Figure (no pyplot), so no global backend is touched.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="random")
    for name, curve in curves.items():
        label = f"{name} (AUC {aucs[name]:.4f})" if aucs and aucs.get(name) is not None else name
        axes.plot(curve["fpr"], curve["tpr"], linewidth=1.5, label=label)
    if oracle is not None:
        axes.plot(
            oracle["fpr"], oracle["tpr"], color="black", linestyle="--", linewidth=1, label="oracle (p_true)"
        )
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="False positive rate", ylabel="True positive rate", title="ROC")
    axes.legend(loc="lower right", fontsize="small")
    return _save_figure(figure, Path(path))


def plot_reliability(curves: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Reliability diagram: observed click rate against mean predicted probability per bin.

    ``curves`` maps a model name to ``ReliabilityCurve.to_dict()``; empty bins are not drawn.
    The axes zoom to the populated range, since CTR predictions rarely go past a few percent.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 6))
    axes = figure.add_subplot()
    upper = 0.0
    for name, curve in curves.items():
        pairs = [
            (p, o)
            for p, o in zip(curve["mean_predicted"], curve["observed"], strict=True)
            if p is not None and o is not None
        ]
        if not pairs:
            continue
        xs, ys = zip(*pairs, strict=True)
        upper = max(upper, *xs, *ys)
        ece = curve.get("ece")
        axes.plot(
            xs, ys, marker="o", linewidth=1.5, label=f"{name} (ECE {ece:.4f})" if ece is not None else name
        )
    limit = min(1.0, upper * 1.05) if upper > 0 else 1.0
    axes.plot([0, limit], [0, limit], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    axes.set(
        xlim=(0, limit),
        ylim=(0, limit),
        xlabel="Mean predicted CTR",
        ylabel="Observed CTR",
        title="Reliability diagram",
    )
    axes.legend(loc="upper left", fontsize="small")
    return _save_figure(figure, Path(path))


def write_report(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    out_dir: str | os.PathLike[str],
    *,
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``evaluation.json`` (summary + every per-seed result), ``report.md`` and two PNGs.

    Plots use each model's first seed. Returns the written paths by kind
    (``json``, ``markdown``, ``roc``, ``calibration``).
    """
    summary = dict(summary) if summary is not None else compare(results)
    out = Path(out_dir)
    table = markdown_table(summary)
    protocol = f"\n{summary['ranking_protocol']}\n" if summary.get("ranking_protocol") else ""
    first = {name: seeds[0] for name, seeds in results.items()}
    oracle = next((r["oracle_roc"] for r in first.values() if "oracle_roc" in r), None)
    return {
        "json": write_json(out / JSON_NAME, {"summary": summary, "results": results}),
        "markdown": _write_text(
            out / MARKDOWN_NAME, f"# Offline evaluation\n\n{_describe(summary)}\n\n{table}{protocol}"
        ),
        "roc": plot_roc(
            {n: r["roc"] for n, r in first.items()},
            out / ROC_NAME,
            oracle=oracle,
            aucs={n: r.get("auc") for n, r in first.items()},
        ),
        "calibration": plot_reliability(
            {n: r["reliability"] for n, r in first.items()}, out / CALIBRATION_NAME
        ),
    }


def _describe(summary: Mapping[str, Any]) -> str:
    """One line saying what was evaluated, so a report read later is self-explanatory."""
    data = summary.get("data") or {}
    where = (
        f"{data.get('split', 'evaluation')} split of {data['source']}" if "source" in data else "one split"
    ) + split_note(data)
    return (
        f"{where}: {summary['rows']} rows, {summary['positives']} clicks. Mean ± sample std over seeds; "
        f"plots show each model's first seed."
    )


def _write_text(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path

"""Training/serving skew per feature: PSI, default and OOV rates online against training, flags and the report.

A feature is flagged when its PSI reaches ``psi_threshold`` (0.2: the usual "significant shift";
0.1-0.2 is "moderate"), or its default rate or OOV rate online differs from training by more
than ``rate_threshold`` (0.05 absolute). Features with fewer than ``min_rows`` online values are
reported but never flagged: their PSI is mostly sampling noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.replay import ReplayResult
from analysis.report_files import markdown_table, new_figure, save_png
from analysis.skew_stats import default_rate, fit_binning, oov_rate, psi
from training.features import Feature, FeatureContract


@dataclass(frozen=True)
class Thresholds:
    """When a feature or the replay is flagged (documented defaults; flags of recsys-skew-report)."""

    psi: float = 0.2
    rate: float = 0.05
    min_rows: int = 100
    replay: float = 1e-4
    numeric_bins: int = 10
    top_k: int = 20


@dataclass
class FeatureSkew:
    """One feature's comparison; ``flags`` says why it is flagged (empty: not)."""

    name: str
    kind: str
    online_rows: int
    psi: float
    default_offline: float
    default_online: float
    oov_offline: float | None
    oov_online: float | None
    labels: tuple[str, ...]
    shares_offline: list[float]
    shares_online: list[float]
    flags: list[str] = field(default_factory=list)


def compare_feature(feature: Feature, train: list[Any], online: list[Any], limits: Thresholds) -> FeatureSkew:
    binning = fit_binning(feature, train, numeric_bins=limits.numeric_bins, top_k=limits.top_k)
    expected, actual = binning.counts(train), binning.counts(online)
    out = FeatureSkew(
        name=feature.name,
        kind=feature.kind.value,
        online_rows=len(online),
        psi=psi(expected, actual) if len(online) and len(train) else 0.0,
        default_offline=default_rate(feature, train),
        default_online=default_rate(feature, online),
        oov_offline=oov_rate(feature, train),
        oov_online=oov_rate(feature, online),
        labels=binning.labels,
        shares_offline=(expected / max(expected.sum(), 1)).tolist(),
        shares_online=(actual / max(actual.sum(), 1)).tolist(),
    )
    if len(online) < limits.min_rows:
        return out
    if out.psi >= limits.psi:
        out.flags.append(f"PSI {out.psi:.3f} >= {limits.psi}")
    if abs(out.default_online - out.default_offline) > limits.rate:
        out.flags.append(f"default rate {out.default_online:.1%} online vs {out.default_offline:.1%}")
    if out.oov_online is not None and abs(out.oov_online - (out.oov_offline or 0.0)) > limits.rate:
        out.flags.append(f"OOV rate {out.oov_online:.1%} online vs {out.oov_offline:.1%}")
    return out


def compare(
    contract: FeatureContract, train: dict[str, list[Any]], online: dict[str, list[Any]], limits: Thresholds
) -> list[FeatureSkew]:
    """Every contract feature the training data and the log both hold, in contract order."""
    return [
        compare_feature(f, train[f.name], online[f.name], limits)
        for f in contract.features
        if f.name in train and f.name in online
    ]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def markdown(
    skews: list[FeatureSkew], replayed: ReplayResult | None, limits: Thresholds, inputs: list[str]
) -> str:
    flagged = [s.name for s in skews if s.flags]
    rows = [
        [
            s.name,
            s.kind,
            s.online_rows,
            f"{s.psi:.4f}",
            f"{_rate(s.default_offline)} / {_rate(s.default_online)}",
            f"{_rate(s.oov_offline)} / {_rate(s.oov_online)}",
            "; ".join(s.flags) or "ok",
        ]
        for s in skews
    ]
    parts = [
        "# Training/serving skew report",
        f"Flagged: {', '.join(flagged) if flagged else 'none'}. Thresholds: PSI >= {limits.psi}, default or "
        f"OOV rate differing by more than {limits.rate:.0%} (absolute), at least {limits.min_rows} online rows; "
        f"PSI bins from training: {limits.numeric_bins} quantile bins (+ missing) for numeric features, the "
        f"top {limits.top_k} values + other + OOV for categorical ones.",
        "## Features",
        markdown_table(
            [
                "feature",
                "kind",
                "online rows",
                "PSI",
                "default rate train / online",
                "OOV train / online",
                "flag",
            ],
            rows,
        ),
        "![PSI per feature](psi.png)",
    ]
    parts += [f"![{name}](feature_{name}.png)" for name in flagged]
    parts.append("## Replay through the exported model")
    if replayed is None:
        parts.append("Not run (no --model).")
    else:
        verdict = "FLAGGED" if replayed.max_abs_diff > limits.replay else "reproduced"
        parts.append(
            f"{replayed.requests} requests, {replayed.rows} rows: max abs diff {replayed.max_abs_diff:.3g}, "
            f"mean {replayed.mean_abs_diff:.3g} (tolerance {limits.replay:g}): {verdict}.\n\n"
            "![replayed - logged](replay.png)"
        )
    parts += ["## Inputs", "\n".join(f"- {line}" for line in inputs)]
    return "\n\n".join(parts) + "\n"


def plot_psi(skews: list[FeatureSkew], limits: Thresholds, path: Path) -> None:
    figure = new_figure()
    axes = figure.add_subplot()
    colours = ["tab:red" if s.flags else "tab:blue" for s in skews]
    axes.bar([s.name for s in skews], [s.psi for s in skews], color=colours)
    axes.axhline(limits.psi, color="black", linestyle="--", label=f"threshold {limits.psi}")
    axes.set_yscale("symlog", linthresh=0.01)
    axes.set_ylabel("PSI (online vs training)")
    axes.tick_params(axis="x", labelrotation=45)
    axes.legend()
    save_png(figure, path)


def plot_feature(skew: FeatureSkew, path: Path) -> None:
    figure = new_figure(8.0, 4.0)
    axes = figure.add_subplot()
    x = np.arange(len(skew.labels))
    axes.bar(x - 0.2, skew.shares_offline, width=0.4, label="training")
    axes.bar(x + 0.2, skew.shares_online, width=0.4, label="online")
    axes.set_xticks(x, skew.labels, rotation=60, fontsize=7)
    axes.set_ylabel("share")
    axes.set_title(f"{skew.name}: PSI {skew.psi:.3f}")
    axes.legend()
    save_png(figure, path)


def plot_replay(replayed: ReplayResult, path: Path) -> None:
    figure = new_figure()
    axes = figure.add_subplot()
    axes.hist(np.log10(np.maximum(replayed.diffs, 1e-12)), bins=40)
    axes.set_xlabel("log10 |replayed - logged score| (1e-12 floor)")
    axes.set_ylabel("rows")
    save_png(figure, path)

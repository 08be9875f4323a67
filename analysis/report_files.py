"""Writing a report folder: PNG figures and Markdown, each through a temporary file and a rename."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.atomic_files import atomic_path, atomic_write_text


def new_figure(width: float = 7.0, height: float = 4.0) -> Any:
    """A matplotlib Figure on the Agg canvas, without pyplot: no global figure registry or backend switch."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_png(figure: Any, path: Path) -> Path:
    """Render ``figure`` as PNG to ``path`` atomically (a reader never sees half an image)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


def save_text(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def save_json(path: Path, data: Any) -> Path:
    return save_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells as given; ``|`` in a cell escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

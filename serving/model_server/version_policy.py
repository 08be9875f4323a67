"""Which versions of a model should be served: numeric directories on disk and the version policy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def list_versions(base_path: str | Path) -> list[int]:
    """Numeric version directories under ``base_path`` (others are ignored, as in TF Serving)."""
    base = Path(base_path)
    if not base.is_dir():
        return []
    versions = []
    for child in base.iterdir():
        if child.is_dir() and child.name.isdigit():
            versions.append(int(child.name))
    return sorted(versions)


def aspired_versions(model_config: Any, on_disk: Iterable[int]) -> set[int]:
    """The versions a ModelConfig's version policy selects from those on disk."""
    versions = sorted(set(on_disk))
    policy = model_config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return set(versions)
    if which == "specific":
        return set(versions) & {int(v) for v in policy.specific.versions}
    num = policy.latest.num_versions if which == "latest" and policy.latest.num_versions > 0 else 1
    return set(versions[-num:])


def version_dir_name(base: Path, version: int) -> str:
    """The directory holding a version ('00000123' and '123' both name version 123)."""
    for child in base.iterdir():
        if child.is_dir() and child.name.isdigit() and int(child.name) == version:
            return child.name
    return str(version)

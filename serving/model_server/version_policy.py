"""Which versions of a model should be served: numeric directories on disk and the version policy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

_INT64_MAX = 2**63 - 1


def version_number(name: str) -> int | None:
    """The version a base-path child stands for, or None (``absl::SimpleAtoi``, as TF reads it).

    ASCII whitespace around it and one sign are allowed, then ASCII digits only, within int64:
    ``str.isdigit`` would take '٣' as 3 and let '²' through to ``int()``, which raises.
    """
    text = name.strip(" \t\n\v\f\r")
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return None
    return value


def list_versions(base_path: str | Path) -> list[int]:
    """Children of ``base_path`` whose names are version numbers, as TF Serving lists them.

    Like FileSystemStoragePathSource, a child counts whatever it is (a stray file named '7'
    becomes a version whose load fails and says why); other names are ignored.
    """
    base = Path(base_path)
    if not base.is_dir():
        return []
    versions = []
    for child in base.iterdir():
        number = version_number(child.name)
        if number is not None:
            versions.append(number)
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
        if version_number(child.name) == version:
            return child.name
    return str(version)

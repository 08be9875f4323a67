"""Print the project's requirements (core plus chosen extras) from pyproject.toml, one per line.

Docker builds install these in a layer of their own, before the source is copied, so a code
change does not re-download TensorFlow. Standard library only: it runs in a bare base image.

    python3 docker/requirements.py pyproject.toml            # core (the ranker: no TensorFlow)
    python3 docker/requirements.py pyproject.toml serving    # core + the serving extra
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

_SELF_EXTRA = re.compile(r"^\s*(?P<name>[A-Za-z0-9._-]+)\s*\[(?P<extras>[^\]]*)\]\s*$")


def requirements(pyproject: Path, extras: Sequence[str] = ()) -> list[str]:
    """Core dependencies plus those of ``extras``, self-references (``pkg[a,b]``) expanded.

    Raises:
        ValueError: the file has no ``[project]`` table or an extra is not declared.
    """
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project")
    if not isinstance(project, dict) or "name" not in project:
        raise ValueError(f"{pyproject}: no [project] table with a name")
    declared = project.get("optional-dependencies", {})
    own = _normal(project["name"])
    out: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in declared:
            raise ValueError(f"{pyproject}: extra {extra!r} is not declared (have {sorted(declared)})")
        seen.add(extra)
        for req in declared[extra]:
            match = _SELF_EXTRA.match(req)
            if match and _normal(match["name"]) == own:
                pending += [e.strip() for e in match["extras"].split(",") if e.strip()]
            else:
                out.append(req)
    return list(dict.fromkeys(out))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: requirements.py PYPROJECT [EXTRA ...]", file=sys.stderr)
        return 2
    try:
        lines = requirements(Path(args[0]), args[1:])
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

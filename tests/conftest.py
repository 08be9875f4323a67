"""Shared fixtures: where the read-only shared data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The shared data folder: $RECSYS_SHARED_DIR, else ../shared beside the repository."""
    return Path(os.environ.get("RECSYS_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} is absent (set RECSYS_SHARED_DIR)")
    return root


@pytest.fixture(scope="session")
def movielens_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "ml-100k"
    if not path.is_dir():
        pytest.skip(f"MovieLens-100K not found at {path}")
    return path


@pytest.fixture(scope="session")
def tfserving_testdata(shared_dir: Path) -> Path:
    path = shared_dir / "testdata" / "tfserving"
    if not path.is_dir():
        pytest.skip(f"TF Serving test models not found at {path}")
    return path

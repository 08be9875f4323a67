"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory):
    """3,000 synthetic rows (seed 7) split as the loader splits them: a few seconds an epoch."""
    from training.data import load_source

    return load_source("synthetic", None, num_rows=3000, seed=7, cache_dir=str(tmp_path_factory.mktemp("s")))

"""Small synthetic data sets shared by the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.synthetic import write_synthetic
from training.data.synthetic_world import SyntheticConfig

SMALL = SyntheticConfig(num_rows=12_000, seed=7, num_users=300, num_items=150, num_categories=8)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12k-row synthetic data set written once per test module."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), SMALL, chunk_rows=5_000)

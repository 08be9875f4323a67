"""The training benchmark's settings: per-dataset tuned values, then model defaults, then flags.

The benchmark's numbers live in the README; what is tested here is which settings a row trains
with, because a wrong merge (say ``lr`` losing its full-batch solver to MovieLens' small batches)
would silently change every reported number.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_training.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_training_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _args(which: str, **flags: float | int | None) -> argparse.Namespace:
    unset = {
        "epochs": None,
        "batch_size": None,
        "learning_rate": None,
        "dropout": None,
        "monitor": None,
        "lr_decay": None,
        "calibrate": None,
    }
    return argparse.Namespace(which=which, l2=1e-4, **{**unset, **flags})


def test_movielens_deep_models_train_with_the_tuned_values(bench: ModuleType) -> None:
    args = _args("movielens")
    assert bench._settings("deepfm", args) == {
        "epochs": 40,
        "batch_size": 512,
        "learning_rate": 2e-3,
        "calibrate": True,
    }
    assert bench._model_config(args) == {"dropout": 0.3, "hidden_units": [128, 64], "l2": 1e-4}


def test_lr_keeps_its_full_batch_solver_under_movielens_tuning(bench: ModuleType) -> None:
    assert bench._settings("lr", _args("movielens")) == {
        "epochs": 10,
        "batch_size": 2**20,
        "learning_rate": 0.1,
        "passes": 50,
        "calibrate": True,  # Platt scaling is affine in the logit: lr's AUC against scikit-learn's holds
    }


def test_flags_win_and_synthetic_keeps_the_shared_settings(bench: ModuleType) -> None:
    args = _args("movielens", batch_size=64, dropout=0.0, monitor="val_logloss")
    assert bench._settings("dcnv2", args)["batch_size"] == 64
    assert bench._settings("dcnv2", args)["monitor"] == "val_logloss"
    assert bench._model_config(args)["dropout"] == 0.0
    synthetic = _args("synthetic")
    assert bench._settings("deepfm", synthetic) == {"epochs": 8, "batch_size": 2048, "learning_rate": 2e-3}
    assert bench._model_config(synthetic) == {"l2": 1e-4}


def test_movielens_loads_the_tuned_features_and_synthetic_none(bench: ModuleType) -> None:
    assert bench._data_options("movielens") == {"prior_stats": True, "history_len": 50}
    assert bench._data_options("synthetic") == {}

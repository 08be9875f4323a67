"""A zoo model (fresh or reloaded from .keras) survives tf.saved_model.save/load, lookup tables included."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.models.conftest import tiny_batch, tiny_contract
from training.features import FeatureContract
from training.models import ModelConfig, build_model

REPO_ROOT = Path(__file__).resolve().parents[3]


class _Serving(tf.Module):
    """What an exporter does: a tf.function with one [None] TensorSpec per contract feature."""

    def __init__(self, model: keras.Model, contract: FeatureContract) -> None:
        super().__init__()
        self.model = model
        names = list(contract.names)
        specs = [tf.TensorSpec([None], tf.as_dtype(f.dtype), name=f.name) for f in contract.features]

        @tf.function(input_signature=specs)
        def serve(*tensors: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"ctr": self.model(dict(zip(names, tensors, strict=True)), training=False)}

        self.serve = serve


def _save(model: keras.Model, contract: FeatureContract, path: Path) -> None:
    module = _Serving(model, contract)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.mark.parametrize("name", ["deepfm", "dcnv2"])
def test_saved_model_round_trip_in_process(name: str, tmp_path: Path) -> None:
    contract, batch = tiny_contract(), tiny_batch()
    model = build_model(name, contract, config=ModelConfig(hidden_units=(8,)), seed=4)
    expected = model.predict(batch, verbose=0)
    model.save(tmp_path / "model.keras")
    _save(keras.models.load_model(tmp_path / "model.keras"), contract, tmp_path / "saved")
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    signature = loaded.signatures["serving_default"]
    out = signature(**{k: tf.constant(v) for k, v in batch.items()})
    np.testing.assert_allclose(out["ctr"].numpy(), expected, rtol=1e-6)
    assert loaded.serve(*(tf.constant(batch[n]) for n in contract.names))["ctr"].shape == (4,)


@pytest.mark.slow
def test_saved_model_loads_in_a_fresh_process_without_our_code(tmp_path: Path) -> None:
    contract, batch = tiny_contract(), tiny_batch()
    model = build_model("wide_deep", contract, config=ModelConfig(hidden_units=(8,)), seed=9)
    expected = model.predict(batch, verbose=0)
    _save(model, contract, tmp_path / "saved")
    rows = {k: [str(x) if v.dtype == object else x.item() for x in v] for k, v in batch.items()}
    (tmp_path / "batch.json").write_text(json.dumps(rows, allow_nan=True))
    script = textwrap.dedent(
        """
        import json, sys
        import tensorflow as tf
        assert "training" not in sys.modules
        rows = json.load(open(sys.argv[2]))
        fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        specs = fn.structured_input_signature[1]
        out = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in rows.items()})
        print(json.dumps(out["ctr"].numpy().tolist()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "saved"), str(tmp_path / "batch.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(json.loads(result.stdout.strip().splitlines()[-1]), expected, rtol=1e-6)

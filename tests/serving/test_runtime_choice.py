"""TF2 SavedModels run in a Session (as TF Serving runs them) unless their variables do not restore there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from export.saved_model import export_saved_model  # noqa: E402
from serving.model_server.runtime import FunctionRuntime, SessionRuntime  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402
from training.features import Feature, FeatureContract  # noqa: E402
from training.models import build_model  # noqa: E402


def test_keras_variables_missing_from_the_session_fall_back_to_functions(tmp_path: Path) -> None:
    import tensorflow as tf

    inputs = keras.Input(shape=(3,), name="x")
    outputs = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="ones")(inputs)
    model = keras.Model(inputs, outputs)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(x):
        return {"y": model(x)}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": serve})
    servable = Servable("m", 1, tmp_path / "1")
    assert isinstance(servable._runtime, FunctionRuntime)
    out = servable.run("serving_default", {"x": np.array([[1, 2, 3], [0, 0, 0]], np.float32)})
    np.testing.assert_allclose(out["y"], [[7.0], [1.0]])  # 1+2+3 + bias 1, then the bias alone


def test_our_export_runs_in_a_session_with_the_keras_scores(tmp_path: Path) -> None:
    contract = FeatureContract(
        features=(
            Feature("user", "categorical_string", "user", vocabulary=("a", "b")),
            Feature("price", "numeric", "item", mean=2.0, std=1.5, transform="log1p"),
        )
    )
    model = build_model("deepfm", contract, seed=4)
    version = export_saved_model(model, contract, tmp_path, "ctr", 1)
    servable = Servable("ctr", 1, version)
    assert isinstance(servable._runtime, SessionRuntime)
    assert servable._runtime.variables_restored()
    columns = {
        "user": np.array([b"a", b"b", b"zz"], dtype=object),
        "price": np.array([1, 10, 100], np.float32),
    }
    served = servable.run("serving_default", columns)["ctr"]
    expected = np.asarray(
        model.predict(
            {"user": np.array(["a", "b", "zz"], dtype=object), "price": columns["price"]}, verbose=0
        )
    )
    np.testing.assert_allclose(served, expected.reshape(-1), atol=1e-6)
    assert np.ptp(served) > 0  # distinct scores, so the comparison means something

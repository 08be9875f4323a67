"""Host-side numpy preprocessing and Fingerprint64 against TensorFlow's own ops, and the ONNX core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.training.models.conftest import tiny_batch, tiny_contract
from training.features import ContractError, Feature, FeatureContract
from training.layers import FeaturePreprocessor
from training.models import ModelConfig, build_model, fingerprint64, preprocess_numpy, split_model
from training.models.farmhash import hash_bucket

ALPHABET = list("abcdefXYZ0123456789|-_ .") + ["é", "ß", "中", "文", "😀", "\x00", "\n"]
INT64_MAX = 2**63 - 1
REPO_ROOT = Path(__file__).resolve().parents[3]


def _random_strings(rng: np.random.Generator, count_per_length: int, max_len: int) -> list[str]:
    return [
        "".join(rng.choice(ALPHABET, size=n)) for n in range(max_len + 1) for _ in range(count_per_length)
    ]


def test_host_preprocess_imports_no_tensorflow() -> None:
    code = "import sys, training.models.host_preprocess; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False False"


def test_fingerprint64_of_empty_string_is_farmhash_k2() -> None:
    assert fingerprint64("") == fingerprint64(b"") == 0x9AE16A3B2F90404F


def test_fingerprint64_matches_tensorflow_on_random_strings() -> None:
    # Lengths 0..100 characters; multi-byte characters push UTF-8 lengths past 300 bytes, so
    # every branch (0-3, 4-7, 8-16, 17-32, 33-64 bytes and the 64-byte loop) is exercised.
    strings = _random_strings(np.random.default_rng(0), 4, 100)
    byte_lengths = {len(s.encode()) for s in strings}
    assert min(byte_lengths) == 0 and max(byte_lengths) > 128
    for buckets in (INT64_MAX, 2**62 + 7, 1000, 3, 1):
        expected = tf.strings.to_hash_bucket_fast(tf.constant(strings), buckets).numpy().tolist()
        assert [hash_bucket(s, buckets) for s in strings] == expected, buckets


def test_hash_bucket_rejects_zero_buckets() -> None:
    with pytest.raises(ValueError, match="num_buckets must be >= 1"):
        hash_bucket("a", 0)


# Edge values for log1p features: zeros of both signs, negatives, huge, tiny/subnormal, NaN, inf.
LOG1P_EDGES = np.array(
    [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-45, 3.4028235e38, -3.4028235e38, 1e7, -2.5, np.nan, np.inf, -np.inf],
    np.float32,
)


def _log1p_contract() -> FeatureContract:
    """tiny_contract plus two log1p numerics (positive and negative mean)."""
    extra = (
        Feature("spend", "numeric", "user", mean=2.0, std=1.5, transform="log1p"),
        Feature("delta", "numeric", "context", mean=-0.3, std=0.7, transform="log1p"),
    )
    return FeatureContract(features=(*tiny_contract().features, *extra))


def _heavy_tailed(rng: np.random.Generator, n: int) -> np.ndarray:
    """Signed reals over ~80 orders of magnitude, signed integer counts, and the edge values."""
    magnitude = np.exp(rng.uniform(-90.0, 88.7, n))
    reals = np.where(rng.random(n) < 0.3, -magnitude, magnitude)
    counts = rng.integers(-3, 10**7, n).astype(np.float64)
    return np.concatenate([reals, counts, LOG1P_EDGES]).astype(np.float32)


def _assert_within_one_ulp(host: np.ndarray, graph: np.ndarray, name: str) -> None:
    """Equal (0.0 == -0.0), or at most one float32 ulp apart."""
    assert host.dtype == graph.dtype == np.float32, name
    gap = np.abs(host.astype(np.float64) - graph.astype(np.float64))
    ulp = np.spacing(np.maximum(np.abs(host), np.abs(graph))).astype(np.float64)
    bad = ~((host == graph) | (gap <= ulp))
    assert not bad.any(), f"{name}: host {host[bad][:5]} vs graph {graph[bad][:5]}"


def _random_batch(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    words = ["a", "b", "x", "y", "z", "q", "", "é", "longer-token-" * 7]
    return {
        "user_id": rng.choice([10, 20, 30, 0, -1, 7, INT64_MAX, -(2**63)], size=n).astype(np.int64),
        "item": rng.choice(words, size=n).astype(object),
        "genres": np.array(
            ["|".join(rng.choice(words, size=rng.integers(0, 6))) for _ in range(n)], dtype=object
        ),
        "city": rng.choice(words + ["paris", "rome"], size=n).astype(object),
        "age": rng.choice(
            np.array([20.0, -1e-3, 31.7, np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-30], np.float32), size=n
        ).astype(np.float32),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_preprocess_numpy_equals_the_graph(seed: int) -> None:
    contract = _log1p_contract()
    rng = np.random.default_rng(seed)
    batch = _random_batch(rng, 64)
    batch["spend"] = rng.choice(_heavy_tailed(rng, 64), size=64)
    batch["delta"] = rng.choice(_heavy_tailed(rng, 64), size=64)
    graph = {k: v.numpy() for k, v in FeaturePreprocessor(contract.to_dict())(batch).items()}
    host = preprocess_numpy(contract, batch)
    assert list(host) == list(graph)
    for name in contract.names:
        assert host[name].dtype == graph[name].dtype, name
        if name in ("spend", "delta"):
            _assert_within_one_ulp(host[name], graph[name], name)
        else:
            np.testing.assert_array_equal(host[name], graph[name], err_msg=name)


def test_log1p_numerics_match_the_graph_within_one_ulp() -> None:
    # 40k values per feature, eager and as a traced graph (what a SavedModel runs). Measured:
    # bit-identical on all of them (the transform is computed in float64 on both sides and
    # rounded once; TF's float32 log1p alone would be up to 4 ulp off numpy's).
    contract = _log1p_contract()
    rng = np.random.default_rng(11)
    values = {"spend": _heavy_tailed(rng, 20_000), "delta": _heavy_tailed(rng, 20_000)}
    n = len(values["spend"])
    batch = {**{k: np.resize(v, n) for k, v in tiny_batch().items()}, **values}
    layer = FeaturePreprocessor(contract.to_dict())
    eager = layer(batch)
    traced = tf.function(layer)({k: tf.constant(v) for k, v in batch.items()})
    host = preprocess_numpy(contract, batch)
    for name in ("spend", "delta"):
        for graph in (eager[name].numpy(), traced[name].numpy()):
            _assert_within_one_ulp(host[name], graph, name)
        feature = contract[name]
        x = values[name].astype(np.float64)
        expected = (np.sign(x) * np.log(1.0 + np.abs(x)) - feature.mean) / feature.std  # float64 route
        finite = np.isfinite(expected)
        np.testing.assert_allclose(host[name][finite], expected[finite], rtol=1e-6, atol=1e-6)
        assert (host[name][~finite] == 0).all() and (~finite).sum() == 3  # NaN, +inf, -inf
        # A missing value is sent as the raw default, which normalises to ~0.
        default = preprocess_numpy(
            contract, {**{k: v[:1] for k, v in batch.items()}, name: [feature.default]}
        )
        assert abs(float(default[name][0])) < 1e-6


def test_preprocess_numpy_hand_values_and_bytes_input() -> None:
    contract, batch = tiny_contract(), tiny_batch()
    out = preprocess_numpy(contract, {**batch, "extra": np.zeros(4)})
    np.testing.assert_array_equal(out["item"], [1, 2, 0, 0])
    np.testing.assert_array_equal(out["genres"], [[1, 2, -1], [-1, -1, -1], [3, 0, 1], [2, -1, -1]])
    np.testing.assert_array_equal(out["age"], np.array([-1.0, 0.0, 2.0, 0.0], np.float32))
    as_bytes = {
        k: (np.array([v.encode() for v in col], dtype=object) if col.dtype == object else col)
        for k, col in batch.items()
    }
    for name, value in preprocess_numpy(contract, as_bytes).items():
        np.testing.assert_array_equal(value, out[name])


def test_preprocess_numpy_errors_name_the_feature_and_row() -> None:
    contract, batch = tiny_contract(), tiny_batch()
    with pytest.raises(ContractError, match=r"missing feature columns \['age'\]"):
        preprocess_numpy(contract, {k: v for k, v in batch.items() if k != "age"})
    with pytest.raises(ContractError, match="feature 'item', row 2: expected a string, got None"):
        preprocess_numpy(contract, {**batch, "item": np.array(["a", "b", None, "c"], dtype=object)})
    with pytest.raises(ContractError, match="feature 'user_id': int column has dtype float64"):
        preprocess_numpy(contract, {**batch, "user_id": np.array([1.0, 2.0, 3.0, 4.0])})
    with pytest.raises(ContractError, match=r"feature 'age': expected a rank-1 column, got shape \(4, 1\)"):
        preprocess_numpy(contract, {**batch, "age": batch["age"].reshape(4, 1)})
    with pytest.raises(ContractError, match="differ in length"):
        preprocess_numpy(contract, {**batch, "city": batch["city"][:2]})


@pytest.mark.parametrize("name", ["deepfm", "dcnv2"])
def test_onnx_core_on_host_preprocessing_matches_keras(name: str) -> None:
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    contract: FeatureContract = _log1p_contract()
    model = build_model(name, contract, config=ModelConfig(hidden_units=(8,), low_rank=2), seed=5)
    _, core = split_model(model)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in core.inputs]
    names = [t.name for t in core.inputs]

    @tf.function(input_signature=specs)
    def serve(*tensors: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"ctr": core(dict(zip(names, tensors, strict=True)), training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = _random_batch(np.random.default_rng(3), 16)
    # Finite, moderate numerics: +-3e37 after normalisation overflows the cross layers in any runtime.
    batch["age"] = np.where(np.abs(batch["age"]) < 1e3, batch["age"], np.float32(42.0))
    rng = np.random.default_rng(4)  # log1p keeps even +-3e38 at about +-60 after normalisation
    batch["spend"], batch["delta"] = rng.choice(_heavy_tailed(rng, 16), size=(2, 16))
    host = preprocess_numpy(contract, batch)
    (onnx_ctr,) = session.run(["ctr"], {n: host[n] for n in names})
    np.testing.assert_allclose(onnx_ctr, model.predict(batch, verbose=0), rtol=1e-5, atol=1e-6)

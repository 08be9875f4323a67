"""The exported SavedModel: layout, signatures, outputs, Example signatures, guards, assets, errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export.batches import check_inputs, encode_strings, frame_inputs, take_rows
from export.errors import ContractMismatchError, VersionExistsError
from export.examples import serialize_examples
from export.model_card import contract_sha256
from export.saved_model import export_saved_model
from export.scoring import score_keras, signature_outputs, to_tensors
from export.signatures import method_names, signature_inputs
from export.warmup import read_warmup, request_inputs
from training.features import Feature, FeatureContract

from .conftest import entries

REPO = Path(__file__).resolve().parents[2]


def test_layout_and_assets(exported, contract):
    assert exported.name == "1" and exported.parent.name == "ctr"
    names = {p.name for p in exported.iterdir()}
    assert {"saved_model.pb", "variables", "assets.extra"} <= names
    extra = exported / "assets.extra"
    assert FeatureContract.load(extra / "feature_contract.json") == contract
    assert sorted(p.name for p in extra.iterdir()) == [
        "feature_contract.json",
        "model_card.json",
        "tf_serving_warmup_requests",
    ]
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".tmp-")]


def test_model_card_records_data_code_and_time(exported, contract):
    card = json.loads((exported / "assets.extra" / "model_card.json").read_text())
    commit = card["code_version"]["git_commit"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        assert commit is None
    else:  # HEAD at export time: HEAD itself or an ancestor (commits may land while tests run)
        ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", commit, "HEAD"])
        assert len(commit) == 40 and ancestor.returncode == 0
        assert isinstance(card["code_version"]["git_dirty"], bool)
    assert card["data"] == {"source": "tiny"}
    assert card["model_name"] == "ctr" and card["version"] == 1
    assert card["contract_sha256"] == contract_sha256(contract)
    assert card["exported_at"].endswith("+00:00")
    assert card["features"] == list(contract.names)


def test_serving_signature_equals_contract(exported, contract, loaded):
    want = {f.name: (f.dtype, (-1,)) for f in contract.features}
    assert signature_inputs(exported) == want
    _, kwargs = loaded.signatures["serving_default"].structured_input_signature
    assert {k: (v.dtype.name, tuple(v.shape.as_list())) for k, v in kwargs.items()} == {
        f.name: (f.dtype, (None,)) for f in contract.features
    }
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert sorted(outputs) == ["ctr", "logit"]
    assert all(o.dtype.name == "float32" and o.shape.as_list() == [None] for o in outputs.values())


def test_method_names_are_tf_servings(exported):
    names = method_names(exported)
    assert names["serving_default"] == "tensorflow/serving/predict"
    assert names["classification"] == "tensorflow/serving/classify"
    assert names["regression"] == "tensorflow/serving/regress"


def test_fingerprint_matches_rewritten_graph(exported):
    import tensorflow as tf
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    stored = tf.saved_model.experimental.read_fingerprint(str(exported))
    fresh = fingerprinting.CreateFingerprintDef(str(exported))
    from tensorflow.core.protobuf import fingerprint_pb2

    proto = fingerprint_pb2.FingerprintDef()
    proto.ParseFromString(fresh)
    assert stored.saved_model_checksum == proto.saved_model_checksum


def test_outputs_equal_keras_and_logit_is_log_odds(trained_model, contract, loaded, eval_frame):
    inputs = frame_inputs(eval_frame.head(3000), contract)
    out = signature_outputs(loaded.signatures["serving_default"], contract, inputs)
    expected = score_keras(trained_model, inputs, contract)
    assert np.max(np.abs(out["ctr"] - expected)) <= 1e-6
    p = out["ctr"].astype(np.float64)
    np.testing.assert_allclose(out["logit"], np.log(p / (1 - p)), atol=2e-4)
    assert out["ctr"].std() > 1e-3  # the trained model separates rows


def test_classify_and_regress_match_predict(contract, loaded, eval_frame):
    import tensorflow as tf

    inputs = frame_inputs(eval_frame.head(50), contract)
    ctr = signature_outputs(loaded.signatures["serving_default"], contract, inputs)["ctr"]
    batch = tf.constant(serialize_examples(contract, inputs))
    classified = loaded.signatures["classification"](inputs=batch)
    assert classified["classes"].numpy().tolist() == [[b"0", b"1"]] * 50
    np.testing.assert_allclose(classified["scores"].numpy()[:, 1], ctr, atol=1e-6)
    np.testing.assert_allclose(classified["scores"].numpy().sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        loaded.signatures["regression"](inputs=batch)["outputs"].numpy(), ctr, atol=1e-6
    )


def test_example_missing_features_take_contract_defaults(contract, loaded):
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    only_user = example_pb2.Example()
    only_user.features.feature["user"].bytes_list.value.append(b"alice")
    from_example = loaded.signatures["regression"](inputs=tf.constant([only_user.SerializeToString()]))
    defaults = {
        f.name: np.array([f.default], dtype=object if f.dtype == "string" else f.dtype)
        for f in contract.features
    }
    defaults["user"] = np.array(["alice"], dtype=object)
    direct = loaded.signatures["serving_default"](**to_tensors(contract, defaults))
    np.testing.assert_allclose(from_example["outputs"].numpy(), direct["ctr"].numpy(), atol=1e-7)


def test_rank2_column_is_refused_in_the_graph(contract, loaded, eval_frame):
    """A loaded signature does not check shapes itself; the EnsureShape guard must."""
    import tensorflow as tf

    tensors = to_tensors(contract, frame_inputs(eval_frame.head(3), contract))
    tensors["user"] = tf.reshape(tensors["user"], [3, 1])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"\[3,1\] is not compatible with expected shape \[\?\]"
    ):
        loaded.signatures["serving_default"](**tensors)


def test_float64_is_refused(contract, loaded, eval_frame):
    import tensorflow as tf

    inputs = frame_inputs(eval_frame.head(3), contract)
    tensors = to_tensors(contract, inputs)
    tensors["price"] = tf.constant(inputs["price"], dtype=tf.float64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor but is a double"):
        loaded.signatures["serving_default"](**tensors)
    # numpy float64 would be cast silently by the signature; our batch check names the feature
    inputs["price"] = inputs["price"].astype(np.float64)
    with pytest.raises(ContractMismatchError, match="feature 'price' must be float32, got float64"):
        check_inputs(contract, inputs)


def test_mismatched_batch_sizes_are_refused(contract, loaded, eval_frame):
    import tensorflow as tf

    tensors = to_tensors(contract, frame_inputs(eval_frame.head(3), contract))
    tensors["city"] = tensors["city"][:2]
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in batch size"):
        loaded.signatures["serving_default"](**tensors)


def test_warmup_records_are_real_rows(exported, contract, eval_frame):
    logs = read_warmup(exported / "assets.extra" / "tf_serving_warmup_requests")
    assert [len(request_inputs(log)["user"]) for log in logs] == [1, 8, 64]
    rows = frame_inputs(eval_frame.head(100), contract)
    starts = [0, 1, 9]
    for log, start in zip(logs, starts, strict=True):
        request = log.predict_log.request
        assert request.model_spec.name == "ctr" and request.model_spec.signature_name == "serving_default"
        got = request_inputs(log)
        size = len(got["user"])
        expected = take_rows(rows, np.arange(start, start + size))
        assert [v.decode() for v in got["user"]] == list(expected["user"])
        np.testing.assert_array_equal(got["item"], expected["item"])
        np.testing.assert_array_equal(got["price"], expected["price"])
        assert got["price"].dtype == np.float32 and got["item"].dtype == np.int64


def test_no_optimizer_state_in_export(exported, trained_model):
    import tensorflow as tf

    assert trained_model.optimizer is not None and len(trained_model.optimizer.variables) > 0
    saved = {
        name: shape
        for name, shape in tf.train.list_variables(str(exported / "variables" / "variables"))
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }
    assert not [n for n in saved if "optimizer" in n.lower() or "adam" in n.lower()]
    weights = sorted(tuple(w.shape) for w in trained_model.weights)
    assert sorted(tuple(s) for s in saved.values()) == weights
    size = sum(p.stat().st_size for p in (exported / "variables").iterdir())
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in trained_model.weights)
    assert size < weight_bytes + 20_000  # the weights plus the checkpoint's object graph, no slots


def test_versions_increase_and_existing_version_is_refused(tmp_path, trained_model, contract):
    first = export_saved_model(trained_model, contract, tmp_path, "ctr")
    second = export_saved_model(trained_model, contract, tmp_path, "ctr")
    assert (first.name, second.name) == ("1", "2")
    assert not (second / "assets.extra" / "tf_serving_warmup_requests").exists()  # no warmup frame given
    before = (first / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(VersionExistsError, match="version 1 already exists"):
        export_saved_model(trained_model, contract, tmp_path, "ctr", version=1)
    assert (first / "saved_model.pb").stat().st_mtime_ns == before
    assert entries(tmp_path / "ctr") == ["1", "2"]


def test_contract_mismatch_writes_nothing(tmp_path, trained_model, contract):
    other = FeatureContract(
        features=(*contract.features, Feature("hour", "categorical_int", "context", vocabulary=(1, 2)))
    )
    with pytest.raises(ContractMismatchError, match=r"contract features missing from the model: \['hour'\]"):
        export_saved_model(trained_model, other, tmp_path, "ctr")
    retyped = FeatureContract(
        features=tuple(
            Feature("price", "categorical_string", "item", vocabulary=("a",)) if f.name == "price" else f
            for f in contract.features
        )
    )
    with pytest.raises(ContractMismatchError, match="input 'price' is float32, the contract says string"):
        export_saved_model(trained_model, retyped, tmp_path, "ctr")
    assert not (tmp_path / "ctr").exists()


def test_session_bundle_path_like_tf_serving(exported, contract, loaded):
    """Load through the C++ SavedModelBundle (TF1 session API) and run the SignatureDefs by tensor
    name, as TF Serving's Predict/Classify handlers and its warmup replay do."""
    import tensorflow as tf

    logs = read_warmup(exported / "assets.extra" / "tf_serving_warmup_requests")
    expected = [
        signature_outputs(loaded.signatures["serving_default"], contract, request_inputs(log))["ctr"]
        for log in logs
    ]
    examples = serialize_examples(contract, request_inputs(logs[1]))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(exported))
        predict = meta_graph.signature_def["serving_default"]
        classify = meta_graph.signature_def["classification"]
        got = []
        for log in logs:
            feed = {
                predict.inputs[alias].name: tf.make_ndarray(proto)
                for alias, proto in log.predict_log.request.inputs.items()
            }
            got.append(session.run(predict.outputs["ctr"].name, feed))
        scores = session.run(classify.outputs["scores"].name, {classify.inputs["inputs"].name: examples})
    for ctr, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(ctr, want, atol=1e-7)
    np.testing.assert_allclose(scores[:, 1], expected[1], atol=1e-6)


def test_encode_strings_keeps_bytes_and_encodes_the_rest():
    out = encode_strings(np.asarray(["é", b"raw", 7], dtype=object))
    assert out.dtype == object and out.tolist() == [b"\xc3\xa9", b"raw", b"7"]

"""Servable: TF Serving's predict/classify/regress/multi-inference semantics on its own test models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import ml_dtypes
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from google.protobuf import json_format  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    inference_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
)

from serving.model_server import inference  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402
from serving.model_server.warmup import replay_warmup, warmup_path  # noqa: E402


@pytest.fixture(scope="module")
def half_plus_two(tfserving_testdata: Path) -> Servable:
    return Servable("half_plus_two", 123, tfserving_testdata / "saved_model_half_plus_two_cpu" / "00000123")


def _examples(*xs: float, context_x2: float | None = None) -> input_pb2.Input:
    message = input_pb2.Input()
    if context_x2 is None:
        target = message.example_list.examples
    else:
        message.example_list_with_context.context.features.feature["x2"].float_list.value.append(context_x2)
        target = message.example_list_with_context.examples
    for x in xs:
        target.add().features.feature["x"].float_list.value.append(x)
    return message


def test_predict_matches_tf_serving_values(half_plus_two: Servable) -> None:
    # TF Serving's documented example: {"instances": [1.0, 2.0, 5.0]} -> [2.5, 3.0, 4.5].
    out = half_plus_two.run("", {"x": np.array([[1.0], [2.0], [5.0]], np.float32)})
    assert list(out) == ["y"]
    np.testing.assert_array_equal(out["y"], np.array([[2.5], [3.0], [4.5]], np.float32))


def test_predict_does_not_check_declared_shape(half_plus_two: Servable) -> None:
    # x is declared [-1, 1]; TF Serving still accepts a rank-1 batch and returns rank 1.
    out = half_plus_two.run("serving_default", {"x": np.array([2.0, 3.0, 4.0], np.float32)})
    np.testing.assert_array_equal(out["y"], np.array([3.0, 3.5, 4.0], np.float32))


def test_signature_view_is_the_signature_def(half_plus_two: Servable) -> None:
    sig = half_plus_two.signatures["classify_x_to_y"]
    assert sig.method_name == "tensorflow/serving/classify"
    assert sig.inputs["inputs"] == (7, None, "tf_example:0")
    assert sig.outputs["scores"] == (1, (-1, 1), "y:0")
    assert half_plus_two.signatures["serving_default"].inputs["x"].shape == (-1, 1)


def test_signature_def_map_equals_tf_serving_metadata(
    half_plus_two: Servable, tfserving_testdata: Path
) -> None:
    from tensorflow.core.protobuf import meta_graph_pb2

    expected = json.loads((tfserving_testdata / "half_plus_two_model_metadata.json").read_text())
    expected_defs = expected["metadata"]["signature_def"]["signature_def"]
    got = half_plus_two.signature_def_map()
    assert sorted(got) == sorted(expected_defs)
    for key, value in expected_defs.items():
        assert got[key] == json_format.ParseDict(value, meta_graph_pb2.SignatureDef()), key


@pytest.mark.parametrize(
    ("signature", "inputs", "output_filter", "code", "match"),
    [
        ("nope", {}, (), grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
        (
            "",
            {"x": np.array([1.0], np.float64)},
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"Expects arg\[0\] to be float but double is provided",
        ),
        (
            "",
            {"x": np.array([b"a"], object)},
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"Expects arg\[0\] to be float but string is provided",
        ),
        (
            "",
            {"x": np.array([1.0], ml_dtypes.bfloat16)},  # a dtype the decoder produces, not float's
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"Expects arg\[0\] to be float but bfloat16 is provided",
        ),
        (
            "",
            {"x": np.ones(1, np.float32), "z": np.ones(1, np.float32)},
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"input size does not match signature: 2!=1 len\(\{x,z\}\) != len\(\{x\}\)\. "
            r"Sent extra: \{z\}\. Missing but required: \{\}\.",
        ),
        (
            "",
            {"z": np.ones(1, np.float32)},
            (),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"Signature input alias: x\(feed name: x:0\) not found in request",
        ),
        (
            "",
            {"x": np.ones(1, np.float32)},
            ("q",),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"output tensor alias not found in signature: q Outputs expected to be in the set \{y\}\.",
        ),
        (
            "",
            {"x": np.ones(1, np.float32)},
            ("y", "y"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "duplicate output tensor alias: y",
        ),
    ],
)
def test_predict_errors_use_tf_serving_codes_and_texts(
    half_plus_two: Servable, signature, inputs, output_filter, code, match
) -> None:
    with pytest.raises(ServingError, match=match) as info:
        half_plus_two.run(signature, inputs, output_filter)
    assert info.value.code == code


def test_scalar_input_is_accepted_like_tf_serving(half_plus_two: Servable) -> None:
    out = half_plus_two.run("regress_x2_to_y3", {"inputs": np.array(4.0, np.float32)})
    assert float(out["outputs"]) == 5.0


def test_classify_and_regress_build_results(half_plus_two: Servable) -> None:
    result = inference.classify(half_plus_two, "classify_x_to_y", _examples(2.0, 4.0))
    assert [[c.score for c in row.classes] for row in result.classifications] == [[3.0], [4.0]]
    assert result.classifications[0].classes[0].label == ""
    regression = inference.regress(half_plus_two, "regress_x_to_y2", _examples(2.0))
    assert [r.value for r in regression.regressions] == [4.0]  # 0.5 * 2 + 3


def test_example_list_with_context_merges_context(half_plus_two: Servable) -> None:
    # The context carries only x2 (y ignores it); every example is still scored on its own x.
    result = inference.regress(half_plus_two, "regress_x_to_y", _examples(1.0, 3.0, context_x2=7.0))
    assert [r.value for r in result.regressions] == [2.5, 3.5]


@pytest.mark.parametrize(
    ("method", "signature", "request_input", "code", "match"),
    [
        (
            "classify",
            "regress_x_to_y",
            _examples(1.0),
            grpc.StatusCode.FAILED_PRECONDITION,
            "Expected classification signature outputs to contain at least one of",
        ),
        (
            "regress",
            "classify_x_to_y",
            _examples(1.0),
            grpc.StatusCode.FAILED_PRECONDITION,
            "No regression outputs found in SignatureDef",
        ),
        (
            "classify",
            "missing",
            _examples(1.0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "No signature was found with the name: missing",
        ),
        ("regress", "regress_x_to_y", input_pb2.Input(), grpc.StatusCode.INVALID_ARGUMENT, "Input is empty."),
    ],
)
def test_classify_regress_errors(
    half_plus_two: Servable, method, signature, request_input, code, match
) -> None:
    with pytest.raises(ServingError, match=match) as info:
        getattr(inference, method)(half_plus_two, signature, request_input)
    assert info.value.code == code


def test_multi_inference_runs_every_task(half_plus_two: Servable) -> None:
    request = inference_pb2.MultiInferenceRequest()
    request.input.CopyFrom(_examples(2.0))
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y2", "tensorflow/serving/regress"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
        task.method_name = method
    response = inference.multi_inference(half_plus_two, request)
    assert response.results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert response.results[1].regression_result.regressions[0].value == 4.0
    assert response.results[1].model_spec.signature_name == "regress_x_to_y2"
    assert response.results[1].model_spec.version.value == 123
    request.tasks[1].model_spec.name = "other"
    with pytest.raises(ServingError, match="must access the same model name"):
        inference.multi_inference(half_plus_two, request)
    request.tasks[1].model_spec.name = "half_plus_two"
    request.tasks[1].method_name = "tensorflow/serving/predict"
    with pytest.raises(ServingError, match="Unsupported signature method_name") as info:
        inference.multi_inference(half_plus_two, request)
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_half_plus_three_regress_feeds_examples_despite_recorded_float(tfserving_testdata: Path) -> None:
    servable = Servable("hp3", 123, tfserving_testdata / "saved_model_half_plus_three" / "00000123")
    result = inference.regress(servable, "tensorflow/serving/regress", _examples(2.0, 4.0))
    assert [r.value for r in result.regressions] == [4.0, 5.0]


def test_counter_model_is_stateful(tfserving_testdata: Path) -> None:
    servable = Servable("counter", 123, tfserving_testdata / "saved_model_counter" / "00000123")
    assert float(servable.run("incr_counter", {})["output"]) == 1.0
    assert float(servable.run("incr_counter_by", {"delta": np.array(3.0, np.float32)})["output"]) == 4.0
    assert float(servable.run("get_counter", {})["output"]) == 4.0
    assert float(servable.run("reset_counter", {})["output"]) == 0.0
    assert float(servable.run("get_counter", {})["output"]) == 0.0


def test_tf2_model_uses_signature_defaults(tfserving_testdata: Path) -> None:
    servable = Servable("tf2", 123, tfserving_testdata / "saved_model_half_plus_two_tf2_cpu" / "00000123")
    assert servable.run("", {})["y"].tolist() == [2.0]  # default x = 0
    assert servable.run("", {"x": np.array([3.0], np.float32)})["y"].tolist() == [3.5]
    # x is declared [1]; as in TF Serving a longer batch is not rejected by a shape check.
    assert servable.run("", {"x": np.array([1.0, 3.0], np.float32)})["y"].tolist() == [2.5, 3.5]
    # TF2 classify signatures have method predict; TF Serving accepts them without the method check.
    result = inference.classify(servable, "classify_x_to_y", _examples(6.0))
    assert result.classifications[0].classes[0].score == 5.0


def test_matrix_model_and_bad_model(tfserving_testdata: Path) -> None:
    servable = Servable("matrix", 1, tfserving_testdata / "matrix_half_plus_two" / "1")
    x = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    np.testing.assert_array_equal(servable.run("", {"x": x})["y"], 0.5 * x + 2)
    with pytest.raises(ServingError, match="Could not find SavedModel .pb or .pbtxt") as info:
        Servable("bad", 123, tfserving_testdata / "bad_half_plus_two" / "00000123")
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def _write_warmup(version_dir: Path, logs: list[prediction_log_pb2.PredictionLog]) -> None:
    path = warmup_path(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())


def _predict_log(signature: str, **inputs: np.ndarray) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def test_warmup_replays_records(tfserving_testdata: Path, tmp_path: Path) -> None:
    # The counter model makes replay observable: two incr_counter records, two iterations -> 4.
    version_dir = tmp_path / "counter" / "1"
    shutil.copytree(tfserving_testdata / "saved_model_counter" / "00000123", version_dir)
    _write_warmup(version_dir, [_predict_log("incr_counter"), _predict_log("incr_counter")])
    servable = Servable("counter", 1, version_dir)
    assert replay_warmup(servable, iterations=2) == 2
    assert float(servable.run("get_counter", {})["output"]) == 4.0


def test_warmup_failure_is_a_load_error(tfserving_testdata: Path, tmp_path: Path) -> None:
    version_dir = tmp_path / "hp2" / "1"
    shutil.copytree(tfserving_testdata / "saved_model_half_plus_two_cpu" / "00000123", version_dir)
    _write_warmup(version_dir, [_predict_log("serving_default", x=np.array([1.0], np.float64))])
    servable = Servable("hp2", 1, version_dir)
    with pytest.raises(ServingError, match="Expects arg"):
        replay_warmup(servable)


def test_keras_export_with_lookup_serves_like_in_process(tmp_path: Path) -> None:
    """A TF2/Keras SavedModel with a string lookup table runs through the Session path."""
    keras = pytest.importorskip("keras")
    item = keras.Input(shape=(), dtype="string", name="item")
    score = keras.Input(shape=(), dtype="float32", name="score")
    ids = keras.layers.StringLookup(vocabulary=["a", "b", "c"], num_oov_indices=1)(item)
    emb = keras.layers.Embedding(4, 1, embeddings_initializer="ones")(ids)
    out = keras.layers.Add()([keras.layers.Flatten()(emb), keras.layers.Reshape((1,))(score)])
    model = keras.Model({"item": item, "score": score}, keras.layers.Flatten(name="ctr")(out))

    class Module(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, "item"),
                tf.TensorSpec([None], tf.float32, "score"),
            ]
        )
        def serve(self, item, score):
            return {"ctr": tf.reshape(self.model({"item": item, "score": score}), [-1])}

    module = Module()
    version_dir = tmp_path / "m" / "7"
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})
    items = np.array([b"a", b"zzz", b"c"], dtype=object)
    scores = np.array([0.5, 1.5, -1.0], np.float32)
    expected = (
        tf.saved_model.load(str(version_dir))
        .signatures["serving_default"](item=tf.constant(items), score=tf.constant(scores))["ctr"]
        .numpy()
    )
    servable = Servable("m", 7, version_dir)
    got = servable.run("", {"item": items, "score": scores})["ctr"]
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, [1.5, 2.5, 0.0])


def test_a_negative_inter_op_parallelism_is_accepted_and_serves_correct_values(
    tfserving_testdata: Path,
) -> None:
    from tensorflow.core.protobuf import config_pb2

    inline = config_pb2.ConfigProto(inter_op_parallelism_threads=-1, intra_op_parallelism_threads=2)
    servable = Servable(
        "half_plus_two",
        123,
        tfserving_testdata / "saved_model_half_plus_two_cpu" / "00000123",
        session_config=inline,
    )
    try:
        out = servable.run("", {"x": np.array([[1.0], [2.0], [5.0]], np.float32)})
        np.testing.assert_array_equal(out["y"], np.array([[2.5], [3.0], [4.5]], np.float32))
    finally:
        servable.close()

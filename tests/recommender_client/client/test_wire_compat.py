"""Our recsys.tfs messages and TF Serving's official ones read each other's bytes.

This test process imports TensorFlow (the official messages need it); the client never does.
"""

from __future__ import annotations

import numpy as np
import pytest

from recommender_client.client.messages import (
    build_predict_request,
    metadata_from_response,
    outputs_to_arrays,
    pack_signature_def_map,
    status_list,
)
from recommender_client.client.tensors import fill_tensor
from recommender_client.protos import get_model_metadata_pb2, get_model_status_pb2, predict_pb2, status_pb2
from recommender_client.protos.services import SIGNATURE_DEF_MAP_TYPE_URL

tf = pytest.importorskip("tensorflow")
official_predict = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
official_status = pytest.importorskip("tensorflow_serving.apis.get_model_status_pb2")
official_metadata = pytest.importorskip("tensorflow_serving.apis.get_model_metadata_pb2")

X = np.array([0.25, -1.5, 3.0e-8], dtype=np.float32)
IDS = np.array([7, -2, 2**45], dtype=np.int64)
TAGS = np.array(["a|b", "", "ü"], dtype=object)


def test_predict_request_ours_to_official():
    ours = build_predict_request(
        {"x": X, "ids": IDS, "tags": TAGS},
        model_name="ctr",
        signature_name="serving_default",
        version=42,
        output_filter=["ctr", "logit"],
    )
    theirs = official_predict.PredictRequest.FromString(ours.SerializeToString())
    assert theirs.model_spec.name == "ctr"
    assert theirs.model_spec.version.value == 42
    assert theirs.model_spec.WhichOneof("version_choice") == "version"
    assert theirs.model_spec.signature_name == "serving_default"
    assert list(theirs.output_filter) == ["ctr", "logit"]
    x = theirs.inputs["x"]
    assert x.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in x.tensor_shape.dim] == [3]
    np.testing.assert_array_equal(tf.make_ndarray(x), X)
    assert theirs.inputs["ids"].dtype == tf.int64.as_datatype_enum
    np.testing.assert_array_equal(tf.make_ndarray(theirs.inputs["ids"]), IDS)
    tags = theirs.inputs["tags"]
    assert tags.dtype == tf.string.as_datatype_enum
    assert list(tags.string_val) == [b"a|b", b"", "ü".encode()]


def test_predict_request_official_to_ours_with_version_label():
    theirs = official_predict.PredictRequest()
    theirs.model_spec.name = "ctr"
    theirs.model_spec.version_label = "stable"
    theirs.model_spec.signature_name = "sig"
    theirs.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
    theirs.inputs["tags"].CopyFrom(tf.make_tensor_proto(["p", "q"]))
    theirs.output_filter.append("ctr")
    ours = predict_pb2.PredictRequest.FromString(theirs.SerializeToString())
    assert ours.model_spec.WhichOneof("version_choice") == "version_label"
    assert (ours.model_spec.name, ours.model_spec.version_label, ours.model_spec.signature_name) == (
        "ctr",
        "stable",
        "sig",
    )
    assert list(ours.output_filter) == ["ctr"]
    decoded = outputs_to_arrays(ours.inputs)
    np.testing.assert_array_equal(decoded["x"], X)
    assert decoded["tags"].tolist() == [b"p", b"q"]


def test_predict_response_both_ways():
    ours = predict_pb2.PredictResponse()
    ours.model_spec.name = "ctr"
    ours.model_spec.version.value = 3
    ours.model_spec.signature_name = "serving_default"
    fill_tensor(ours.outputs["ctr"], X)
    fill_tensor(ours.outputs["n"], IDS)
    theirs = official_predict.PredictResponse.FromString(ours.SerializeToString())
    assert theirs.model_spec.version.value == 3
    np.testing.assert_array_equal(tf.make_ndarray(theirs.outputs["ctr"]), X)
    np.testing.assert_array_equal(tf.make_ndarray(theirs.outputs["n"]), IDS)

    # A server filling float_val / int64_val instead of tensor_content, with a [2, 1] shape.
    back = official_predict.PredictResponse()
    back.model_spec.name = "ctr"
    back.model_spec.version.value = 9
    back.outputs["y"].CopyFrom(tf.make_tensor_proto([[0.5], [1.5]], dtype=tf.float32))
    back.outputs["k"].dtype = tf.int64.as_datatype_enum
    back.outputs["k"].tensor_shape.dim.add().size = 2
    back.outputs["k"].int64_val.extend([5, -6])
    parsed = predict_pb2.PredictResponse.FromString(back.SerializeToString())
    assert parsed.model_spec.version.value == 9
    decoded = outputs_to_arrays(parsed.outputs)
    assert decoded["y"].shape == (2, 1) and decoded["y"].ravel().tolist() == [0.5, 1.5]
    assert decoded["k"].dtype == np.int64 and decoded["k"].tolist() == [5, -6]


def test_model_status_both_ways():
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "ctr"
    request.model_spec.version.value = 2
    theirs_req = official_status.GetModelStatusRequest.FromString(request.SerializeToString())
    assert (theirs_req.model_spec.name, theirs_req.model_spec.version.value) == ("ctr", 2)
    back_req = get_model_status_pb2.GetModelStatusRequest.FromString(theirs_req.SerializeToString())
    assert back_req == request

    theirs = official_status.GetModelStatusResponse()
    ok = theirs.model_version_status.add(version=2, state=official_status.ModelVersionStatus.AVAILABLE)
    ok.status.error_code = 0
    failed = theirs.model_version_status.add(version=1, state=official_status.ModelVersionStatus.END)
    failed.status.error_code = 3  # tensorflow.error.INVALID_ARGUMENT
    failed.status.error_message = "bad graph"
    ours = get_model_status_pb2.GetModelStatusResponse.FromString(theirs.SerializeToString())
    statuses = status_list(ours)
    assert [(s.version, s.state, s.error_code, s.error_message) for s in statuses] == [
        (2, "AVAILABLE", "OK", ""),
        (1, "END", "INVALID_ARGUMENT", "bad graph"),
    ]
    assert statuses[0].available and not statuses[1].available

    mine = get_model_status_pb2.GetModelStatusResponse()
    item = mine.model_version_status.add(version=7, state=get_model_status_pb2.ModelVersionStatus.LOADING)
    item.status.error_code = status_pb2.UNAVAILABLE
    item.status.error_message = "warming"
    parsed = official_status.GetModelStatusResponse.FromString(mine.SerializeToString())
    got = parsed.model_version_status[0]
    assert (got.version, got.state, got.status.error_code, got.status.error_message) == (
        7,
        official_status.ModelVersionStatus.LOADING,
        14,
        "warming",
    )


def _official_signature_map():
    from tensorflow.core.protobuf import meta_graph_pb2

    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    x = signature.inputs["x"]
    x.name, x.dtype = "x:0", tf.float32.as_datatype_enum
    x.tensor_shape.dim.add().size = -1
    tags = signature.inputs["tags"]
    tags.name, tags.dtype = "tags:0", tf.string.as_datatype_enum
    tags.tensor_shape.unknown_rank = True
    y = signature.outputs["ctr"]
    y.name, y.dtype = "ctr:0", tf.float32.as_datatype_enum
    y.tensor_shape.dim.add().size = -1
    y.tensor_shape.dim.add().size = 1
    signature_map = official_metadata.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(signature)
    return signature_map


def test_model_metadata_official_response_unpacks_with_our_classes():
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "ctr"
    request.model_spec.version_label = "canary"
    request.metadata_field.append("signature_def")
    theirs_req = official_metadata.GetModelMetadataRequest.FromString(request.SerializeToString())
    assert theirs_req.model_spec.version_label == "canary"
    assert list(theirs_req.metadata_field) == ["signature_def"]

    theirs = official_metadata.GetModelMetadataResponse()
    theirs.model_spec.name = "ctr"
    theirs.model_spec.version.value = 5
    theirs.metadata["signature_def"].Pack(_official_signature_map())
    assert theirs.metadata["signature_def"].type_url == SIGNATURE_DEF_MAP_TYPE_URL
    meta = metadata_from_response(
        get_model_metadata_pb2.GetModelMetadataResponse.FromString(theirs.SerializeToString())
    )
    assert (meta.model_name, meta.version) == ("ctr", 5)
    sig = meta.signature()
    assert sig.method_name == "tensorflow/serving/predict"
    assert {n: (s.dtype, s.shape) for n, s in sig.inputs.items()} == {
        "tags": ("string", None),
        "x": ("float32", (None,)),
    }
    assert {n: (s.dtype, s.shape) for n, s in sig.outputs.items()} == {"ctr": ("float32", (None, 1))}


def test_model_metadata_our_response_unpacks_with_official_any():
    ours_map = get_model_metadata_pb2.SignatureDefMap.FromString(
        _official_signature_map().SerializeToString()
    )
    ours = get_model_metadata_pb2.GetModelMetadataResponse()
    ours.model_spec.name = "ctr"
    ours.model_spec.version.value = 5
    pack_signature_def_map(ours_map, ours.metadata["signature_def"])
    theirs = official_metadata.GetModelMetadataResponse.FromString(ours.SerializeToString())
    unpacked = official_metadata.SignatureDefMap()
    assert theirs.metadata["signature_def"].Unpack(unpacked)  # type_url matches the official name
    assert unpacked == _official_signature_map()
    assert theirs.model_spec.version.value == 5

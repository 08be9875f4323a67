"""REST JSON <-> tensors, examples and results with TF Serving's rules and texts (util/json_tensor.cc)."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2 as DT
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from serving.model_server import json_examples as je
from serving.model_server import json_response as jr
from serving.model_server import json_tensor as jt
from serving.model_server.errors import ServingError
from serving.model_server.json_text import decimal_text, error_body, rapidjson_double

X_FLOAT = {"x": DT.DT_FLOAT}


def _inputs(body: str, dtypes=X_FLOAT):
    return jt.predict_inputs(jt.parse_json(body.encode()), dtypes, "")


def test_row_and_columnar_requests() -> None:
    inputs, fmt = _inputs('{"instances": [1.0, 2.0, 5.0]}')
    assert fmt == jt.ROW and inputs["x"].dtype == np.float32
    assert inputs["x"].tolist() == [1.0, 2.0, 5.0]
    inputs, fmt = _inputs('{"inputs": [[1.0], [2]]}')
    assert fmt == jt.COLUMNAR and inputs["x"].shape == (2, 1) and inputs["x"].tolist() == [[1.0], [2.0]]
    inputs, _ = _inputs('{"inputs": 3.5}')
    assert inputs["x"].shape == () and float(inputs["x"]) == 3.5


def test_named_instances_with_b64_and_types() -> None:
    dtypes = {"id": DT.DT_INT64, "tag": DT.DT_STRING, "ok": DT.DT_BOOL, "w": DT.DT_DOUBLE}
    body = (
        '{"instances": [{"id": 7, "tag": {"b64": "AP8="}, "ok": true, "w": 0.1},'
        ' {"id": -1, "tag": "é", "ok": false, "w": 2}]}'
    )
    inputs, fmt = _inputs(body, dtypes)
    assert fmt == jt.ROW
    assert inputs["id"].dtype == np.int64 and inputs["id"].tolist() == [7, -1]
    assert inputs["tag"].tolist() == [b"\x00\xff", "é".encode()]
    assert inputs["ok"].tolist() == [True, False]
    assert inputs["w"].dtype == np.float64 and inputs["w"].tolist() == [0.1, 2.0]


def test_columnar_named_inputs_and_missing_one() -> None:
    dtypes = {"a": DT.DT_INT32, "b": DT.DT_STRING}
    inputs, _ = _inputs('{"inputs": {"a": [[1, 2]], "b": ["x"]}}', dtypes)
    assert inputs["a"].dtype == np.int32 and inputs["a"].tolist() == [[1, 2]]
    with pytest.raises(ServingError, match=r"^Missing named input: b in 'inputs' object\.$"):
        _inputs('{"inputs": {"a": [1]}}', dtypes)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "JSON Parse error: The document is empty"),
        (
            '{"instances": [1.0, 2.0',
            "JSON Parse error: Missing a comma or ']' after an array element. at offset: 23",
        ),
        (
            '{"instances" [1]}',
            "JSON Parse error: Missing a colon after a name of object member. at offset: 13",
        ),
        ("[1]", "JSON Value: [1] Is not object"),
        ('{"x": 1}', "Missing 'inputs' or 'instances' key"),
        ('{"instances": []}', "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
        (
            '{"instances": 1}',
            "JSON Value: {\n    \"instances\": 1\n} Excepting 'instances' to be an list/array",
        ),
        (
            '{"instances": [1], "inputs": [1]}',
            'JSON Value: {\n    "instances": [1],\n    "inputs": [1]\n} '
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        ),
        (
            '{"instances": ["a"]}',
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "a" Type: String is not of expected type: float',
        ),
        (
            '{"instances": [[1.0], [2.0, 3.0]]}',
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting tensor size: 1 but got: 2",
        ),
        (
            '{"inputs": [[1.0], [2.0, 3.0]]}',
            "Encountered list at unexpected size: 2 at level: 1 expected size: 1",
        ),
        (
            '{"inputs": [[1.0], 2.0]}',
            "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        ('{"inputs": [true]}', "JSON Value: true Type: True is not of expected type: float"),
        (
            '{"inputs": {"b64": "!!"}}',
            'JSON Value: {\n    "b64": "!!"\n} Type: Object is not of expected type: float',
        ),
        (
            '{"signature_name": 3, "inputs": [1]}',
            'JSON Value: {\n    "signature_name": 3,\n    "inputs": [1]\n} not formatted '
            "correctly. 'signature_name' key must be a string value.",
        ),
    ],
)
def test_request_errors_carry_tf_serving_texts(body: str, message: str) -> None:
    with pytest.raises(ServingError) as info:
        doc = jt.parse_json(body.encode())
        jt.signature_name(doc)
        jt.predict_inputs(doc, X_FLOAT, "")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == message


def test_int_and_string_type_errors() -> None:
    with pytest.raises(ServingError, match=r"^JSON Value: 1\.5 Type: Number is not of expected type: int64$"):
        _inputs('{"inputs": [1.5]}', {"x": DT.DT_INT64})
    with pytest.raises(ServingError, match=r"is not of expected type: int32"):
        _inputs('{"inputs": [2147483648]}', {"x": DT.DT_INT32})
    with pytest.raises(ServingError, match=r"^Unable to base64 decode$"):
        _inputs('{"inputs": [{"b64": "a$"}]}', {"x": DT.DT_STRING})
    with pytest.raises(ServingError) as info:
        _inputs('{"inputs": [1.0]}', {"x": DT.DT_HALF})
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.message == "Conversion of JSON Value: 1.0 to type: half"


def test_multiple_inputs_need_objects() -> None:
    dtypes = {"a": DT.DT_FLOAT, "b": DT.DT_FLOAT}
    with pytest.raises(ServingError, match="instances is a plain list, but expecting list of objects"):
        _inputs('{"instances": [1.0]}', dtypes)
    with pytest.raises(ServingError, match=r"keys must be equal to: a,b$"):
        _inputs('{"instances": [{"a": 1.0}]}', dtypes)
    with pytest.raises(ServingError, match="JSON object: does not have named input: c"):
        _inputs('{"instances": [{"a": 1.0, "c": 2.0}]}', dtypes)
    with pytest.raises(ServingError, match="Failed to get input map for signature: DEFAULT"):
        _inputs('{"instances": [1.0]}', {})


def test_float_text_like_write_decimal() -> None:
    # absl %g when it round-trips through float32, else 9 significant digits; ".0" for whole numbers.
    assert decimal_text(2.5) == "2.5"
    assert decimal_text(3.0) == "3.0"
    assert decimal_text(float(np.float32(0.1))) == "0.1"
    assert decimal_text(float(np.float32(0.123456789))) == "0.123456791"
    assert decimal_text(1e7) == "1e+07"
    assert decimal_text(123456789.0) == "123456792.0"
    assert decimal_text(float("nan")) == "NaN" and decimal_text(float("-inf")) == "-Infinity"
    assert (
        decimal_text(0.1, double=True) == "0.1" and decimal_text(1 / 3, double=True) == "0.33333333333333331"
    )
    assert rapidjson_double(1e-7) == "1e-7" and rapidjson_double(1e21) == "1e21"
    assert rapidjson_double(123.0) == "123.0" and rapidjson_double(0.001) == "0.001"


def test_row_response_layout_is_tf_servings() -> None:
    body = jr.predict_response_json({"y": np.array([2.5, 3.0, 4.5], np.float32)}, jt.ROW)
    assert body == b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'
    body = jr.predict_response_json(
        {"y": np.array([[1, 2]], np.int64), "s": np.array([b"a"], object)}, jt.ROW
    )
    assert body == (
        b'{\n    "predictions": [\n        {\n            "s": "a",\n            "y": [1, 2]\n'
        b"        }\n    ]\n}"
    )
    assert json.loads(body) == {"predictions": [{"s": "a", "y": [1, 2]}]}


def test_columnar_response_layout_and_bytes_outputs() -> None:
    body = jr.predict_response_json({"y": np.array([[2.5], [3.0]], np.float32)}, jt.COLUMNAR)
    assert (
        body
        == b'{\n    "outputs": [\n        [\n            2.5\n        ],\n        [\n            3.0\n        ]\n    ]\n}'
    )
    body = jr.predict_response_json(
        {"out_bytes": np.array([b"\xff"], object), "n": np.array([True])}, jt.COLUMNAR
    )
    assert json.loads(body) == {"outputs": {"n": [True], "out_bytes": [{"b64": "/w=="}]}}
    with pytest.raises(ServingError, match="has inconsistent batch size: 1 expecting: 2"):
        jr.predict_response_json({"a": np.zeros(2), "b": np.zeros(1)}, jt.ROW)
    with pytest.raises(ServingError, match=r"^Tensor name: a has no shape information $"):
        jr.predict_response_json({"a": np.float32(1.0)}, jt.ROW)


def test_examples_and_result_json() -> None:
    request = input_pb2.Input()
    doc = {"context": {"c": "x"}, "examples": [{"x": 2.0, "n": [1, True], "b": {"b64": "AQ=="}}]}
    je.examples_request(doc, request)
    example = request.example_list_with_context.examples[0]
    assert list(example.features.feature["x"].float_list.value) == [2.0]
    assert list(example.features.feature["n"].int64_list.value) == [1, 1]
    assert list(example.features.feature["b"].bytes_list.value) == [b"\x01"]
    assert list(request.example_list_with_context.context.features.feature["c"].bytes_list.value) == [b"x"]
    with pytest.raises(ServingError, match="Unexpected element type in feature: x expecting type: float"):
        je.examples_request({"examples": [{"x": [1.0, "a"]}]}, input_pb2.Input())
    with pytest.raises(ServingError, match="'examples' value is an empty array"):
        je.examples_request({"examples": []}, input_pb2.Input())
    classes = classification_pb2.ClassificationResult()
    entry = classes.classifications.add().classes.add()
    entry.label, entry.score = "", 3.0
    assert jr.classification_json(classes) == b'{\n    "results": [[["", 3.0]]\n    ]\n}'
    regressions = regression_pb2.RegressionResult()
    regressions.regressions.add().value = 3.5
    regressions.regressions.add().value = 4.0
    assert jr.regression_json(regressions) == b'{\n    "results": [3.5, 4.0]\n}'


def test_error_body_escapes_like_rapidjson() -> None:
    assert error_body('bad "x"\n\x01') == b'{\n    "error": "bad \\"x\\"\\n\\u0001"\n}'


def test_string_columns_encode_as_utf8_with_or_without_nul_characters() -> None:
    plain = jt.json_to_array(["é", "", "a|b"], DT.DT_STRING)
    assert plain.dtype == object and plain.tolist() == ["é".encode(), b"", b"a|b"]
    with_nul = jt.json_to_array(["x\x00y", "z"], DT.DT_STRING)  # takes the per-value route
    assert with_nul.tolist() == [b"x\x00y", b"z"]


def test_float_outputs_are_written_value_by_value_like_write_decimal() -> None:
    rng = np.random.default_rng(3)
    edge = [0.0, -0.0, 1.0, -1.0, 100.0, 1e-7, 3e38, -2.5, 123456.0, 999999.0, 1e6, 1234567.0]
    edge += [999999999.0, 1e9, 4294967296.0, 1.5e-45, 1e-40, 0.1, 65504.0, 16777217.0]
    values = np.concatenate(
        [rng.random(2000), rng.normal(size=2000) * 1e6, rng.integers(-(2**31), 2**31, 2000), edge]
    ).astype(np.float32)
    texts = jr._leaf_texts(values, "ctr")
    assert texts == [decimal_text(v) for v in values.tolist()]  # the per-value reference

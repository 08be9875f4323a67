"""TF Serving's REST classify/regress JSON: "context" and "examples" -> tf.Example protos."""

# Follows `MakeExampleFromJsonObject` / `FillClassifyRegressRequestFromJson` in
# `tensorflow_serving/util/json_tensor.cc`, including its error texts.

from __future__ import annotations

from typing import Any

from tensorflow.core.example import example_pb2, feature_pb2

from serving.model_server.errors import ServingError
from serving.model_server.json_debug import value_to_string
from serving.model_server.json_tensor import decode_b64, invalid, is_b64
from serving.model_server.json_text import json_type_name


def _feature_kind_error(name: str, feature: feature_pb2.Feature) -> ServingError:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(
        feature.WhichOneof("kind") or "", "UNKNOWN"
    )
    return invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_feature_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """`AddValueToFeature`: JSON scalar -> int64/float/bytes list entry."""
    kind = feature.WhichOneof("kind")

    def need(wanted: str) -> None:
        if kind is not None and kind != wanted:
            raise _feature_kind_error(name, feature)

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_b64(value)):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}")
    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        need("bytes_list")
        feature.bytes_list.value.append(decode_b64(value))
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float):  # json_parse already holds ints outside 64 bits as doubles
        need("float_list")
        feature.float_list.value.append(float(value))  # GetFloat: no precision check
    else:
        need("int64_list")
        if value >= 2**63:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def json_to_example(value: Any) -> example_pb2.Example:
    """`MakeExampleFromJsonObject`: {"feature": value or [values]} -> tf.Example."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type_name(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def examples_request(doc: dict[str, Any], input_proto: Any) -> None:
    """Fill a classify/regress `Input` proto from "context" and "examples" (TF Serving's rules)."""
    context = None
    if "context" in doc:
        context = json_to_example(doc["context"])
    if "examples" not in doc:
        raise invalid(
            f"JSON Value: {value_to_string(doc)} When method is classify, key 'examples' is expected "
            "and was not found"
        )
    items = doc["examples"]
    if not isinstance(items, list):
        raise invalid(f"JSON Value: {value_to_string(doc)} Expecting 'examples' value to be an list/array")
    if not items:
        raise invalid(f"JSON Value: {value_to_string(doc)} 'examples' value is an empty array")
    if context is not None:
        target = input_proto.example_list_with_context
        target.context.CopyFrom(context)
    else:
        target = input_proto.example_list
    for item in items:
        target.examples.append(json_to_example(item))

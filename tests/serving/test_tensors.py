"""TensorProto <-> numpy conversion, checked against TensorFlow's own converters."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.model_server import tensors


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, -2.25], [3.0, 1e-30]], dtype=np.float32),
        np.array([1.0, np.inf, -0.0], dtype=np.float64),
        np.array([[1, -2, 2**31 - 1]], dtype=np.int32),
        np.array([2**62, -(2**63)], dtype=np.int64),
        np.array([0, 255], dtype=np.uint8),
        np.array([-128, 127], dtype=np.int8),
        np.array([-3, 7], dtype=np.int16),
        np.array([65535], dtype=np.uint16),
        np.array([2**32 - 1], dtype=np.uint32),
        np.array([2**64 - 1], dtype=np.uint64),
        np.array([True, False, True], dtype=np.bool_),
        np.array([0.5, -65504.0, 1e-7], dtype=np.float16),
        np.array([1.5, -3.0], dtype=ml_dtypes.bfloat16),
        np.array([1 + 2j, -3.5j], dtype=np.complex64),
        np.array([[1 + 2j]], dtype=np.complex128),
        np.array([b"a", b"\x00\xffbin", b""], dtype=object),
        np.float32(2.5),
        # Past the small-field fast path: the buffer-protocol route for typed fields.
        np.linspace(-3, 3, 500, dtype=np.float32).reshape(250, 2),
        np.arange(-250, 250, dtype=np.int64),
        np.array([f"s{i}".encode() for i in range(500)], dtype=object),
    ],
    ids=lambda a: str(np.asarray(a).dtype) + str(np.asarray(a).shape),
)
def test_round_trip_and_agreement_with_tensorflow(array: np.ndarray) -> None:
    array = np.asarray(array)
    proto = tensors.from_ndarray(array)
    back = tensors.to_ndarray(proto)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    # TensorFlow reads our proto to the same values (an independent decoder).
    if array.dtype != ml_dtypes.bfloat16:
        np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    # And we read TensorFlow's encoding (tensor_content for numerics) to the same values.
    np.testing.assert_array_equal(tensors.to_ndarray(tf.make_tensor_proto(array)), array)


def test_as_proto_field_layout_matches_tensorflow_serving() -> None:
    proto = tensors.from_ndarray(np.array([[2.5], [3.0]], dtype=np.float32))
    assert proto.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in proto.tensor_shape.dim] == [2, 1]
    assert list(proto.float_val) == [2.5, 3.0]
    assert proto.tensor_content == b""
    half = tensors.from_ndarray(np.array([1.0], dtype=np.float16))
    assert list(half.half_val) == [0x3C00]


def test_tensor_content_output_option() -> None:
    proto = tensors.from_ndarray(np.array([1, 2], dtype=np.int64), use_tensor_content=True)
    assert proto.tensor_content == np.array([1, 2], dtype="<i8").tobytes()
    assert not proto.int64_val


def test_str_arrays_are_encoded_as_utf8() -> None:
    proto = tensors.from_ndarray(np.array(["é", "ab"]))
    assert list(proto.string_val) == ["é".encode(), b"ab"]


def test_short_value_lists_repeat_the_last_value_like_tensor_from_proto() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 7.0])
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(tensors.to_ndarray(proto), [[1.0, 7.0], [7.0, 7.0]])
    assert tf.make_ndarray(proto).tolist() == [[1.0, 7.0], [7.0, 7.0]]
    empty = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64)
    empty.tensor_shape.dim.add(size=3)
    assert tensors.to_ndarray(empty).tolist() == [0, 0, 0]
    strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"])
    strings.tensor_shape.dim.add(size=2)
    assert tensors.to_ndarray(strings).tolist() == [b"x", b"x"]
    extra = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"b", b"c"])
    extra.tensor_shape.dim.add(size=2)
    assert tensors.to_ndarray(extra).tolist() == [b"a", b"b"]  # FromProtoField ignores extras


def test_scalar_and_empty_tensors() -> None:
    scalar = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[4.0])
    assert tensors.to_ndarray(scalar).shape == () and float(tensors.to_ndarray(scalar)) == 4.0
    zero = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    zero.tensor_shape.dim.add(size=0)
    assert tensors.to_ndarray(zero).shape == (0,)


def test_string_tensor_content_is_decoded() -> None:
    # TF's layout: varint lengths of every element, then the concatenated bytes.
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_content=b"\x02\x01abz")
    proto.tensor_shape.dim.add(size=2)
    assert tensors.to_ndarray(proto).tolist() == [b"ab", b"z"]


def test_bad_tensor_content_size_is_rejected() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\x00" * 6)
    proto.tensor_shape.dim.add(size=2)
    with pytest.raises(tensors.TensorConversionError, match="tensor_content has 6 bytes"):
        tensors.to_ndarray(proto)


def test_invalid_shapes_and_dtypes_are_rejected() -> None:
    unknown = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    unknown.tensor_shape.unknown_rank = True
    with pytest.raises(tensors.TensorConversionError, match="unknown rank"):
        tensors.to_ndarray(unknown)
    negative = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    negative.tensor_shape.dim.add(size=-1)
    with pytest.raises(tensors.TensorConversionError, match="negative dimension"):
        tensors.to_ndarray(negative)
    with pytest.raises(tensors.TensorConversionError, match="unsupported tensor dtype resource"):
        tensors.to_ndarray(tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE))


def test_dtype_names_match_tensorflow() -> None:
    for enum, tf_dtype in [
        (types_pb2.DT_FLOAT, tf.float32),
        (types_pb2.DT_STRING, tf.string),
        (types_pb2.DT_INT64, tf.int64),
        (types_pb2.DT_HALF, tf.float16),
        (types_pb2.DT_BOOL, tf.bool),
    ]:
        # tf.DType.name differs from DataTypeString only for float32/float16 ("float"/"half").
        expected = {"float32": "float", "float16": "half"}.get(tf_dtype.name, tf_dtype.name)
        assert tensors.dtype_name(enum) == expected


def test_complex_fields_hold_two_values_per_element_even_when_their_count_equals_the_shape() -> None:
    # 2 floats are ONE complex value; a [2] complex tensor repeats it (FromProtoField padding).
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64, scomplex_val=[1.0, 2.0])
    proto.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(tensors.to_ndarray(proto), np.array([1 + 2j, 1 + 2j], np.complex64))
    np.testing.assert_array_equal(tf.make_ndarray(proto), np.array([1 + 2j, 1 + 2j], np.complex64))

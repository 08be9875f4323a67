"""TensorProto encoding and decoding by hand-computed bytes and TensorFlow's own fill rules."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from recommender_client.client.errors import BadResponse, InvalidRequest
from recommender_client.client.tensors import decode_tensor, dtype_name, tensor_proto
from recommender_client.protos import tensor_pb2, types_pb2


def test_float32_goes_to_tensor_content_as_little_endian_bytes():
    proto = tensor_proto(np.array([1.5, -2.0, 0.25], dtype=np.float32))
    assert proto.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in proto.tensor_shape.dim] == [3]
    assert proto.tensor_content == struct.pack("<3f", 1.5, -2.0, 0.25)
    assert len(proto.float_val) == 0


def test_int64_and_big_endian_input_are_sent_little_endian():
    proto = tensor_proto(np.array([1, -1, 2**40], dtype=">i8"))
    assert proto.dtype == types_pb2.DT_INT64
    assert proto.tensor_content == struct.pack("<3q", 1, -1, 2**40)


def test_strings_go_to_string_val_as_utf8_bytes():
    proto = tensor_proto(np.array(["a", "ü|b", b"\xff"], dtype=object))
    assert proto.dtype == types_pb2.DT_STRING
    assert list(proto.string_val) == [b"a", "ü|b".encode(), b"\xff"]
    unicode_proto = tensor_proto(np.array(["x", "yz"]))
    assert list(unicode_proto.string_val) == [b"x", b"yz"]


def test_two_dimensional_shape_is_kept():
    proto = tensor_proto(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert [d.size for d in proto.tensor_shape.dim] == [2, 3]
    assert decode_tensor(proto).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_bad_inputs_are_invalid_requests():
    with pytest.raises(InvalidRequest, match="input 'ids'.*got int 3"):
        tensor_proto(np.array(["a", 3], dtype=object), name="ids")
    with pytest.raises(InvalidRequest, match="complex128"):
        tensor_proto(np.array([1j]))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint8", "bool", "float16"])
def test_round_trip_numeric(dtype):
    array = np.array([0, 1, 1, 0, 1], dtype=dtype)
    out = decode_tensor(tensor_proto(array))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)
    out[0] = 1  # decoded arrays are writable copies
    assert dtype_name(tensor_proto(array).dtype) == dtype


def test_decode_typed_fields_follow_tensorflow_fill_rule():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add().size = 4
    proto.float_val.extend([0.5, 2.0])  # fewer values than elements: the last one repeats
    assert decode_tensor(proto).tolist() == [0.5, 2.0, 2.0, 2.0]
    empty = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64)
    empty.tensor_shape.dim.add().size = 2
    assert decode_tensor(empty).tolist() == [0, 0]
    half = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF)
    half.tensor_shape.dim.add().size = 1
    half.half_val.append(0x3C00)  # IEEE half 1.0
    assert decode_tensor(half).tolist() == [1.0]


def test_decode_strings_and_scalars():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"p", b"q"])
    proto.tensor_shape.dim.add().size = 2
    assert decode_tensor(proto).tolist() == [b"p", b"q"]
    scalar = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, double_val=[3.25])
    out = decode_tensor(scalar)
    assert out.shape == () and float(out) == 3.25


def test_decode_rejects_inconsistent_tensors():
    short = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\x00" * 8)
    short.tensor_shape.dim.add().size = 3
    with pytest.raises(BadResponse, match="output 'ctr': tensor_content has 8 bytes.*needs 12"):
        decode_tensor(short, name="ctr")
    too_many = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3])
    too_many.tensor_shape.dim.add().size = 2
    with pytest.raises(BadResponse, match="3 values for shape \\[2\\]"):
        decode_tensor(too_many)
    resource = tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE)
    with pytest.raises(BadResponse, match="unsupported dtype DT_RESOURCE"):
        decode_tensor(resource)
    negative = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    negative.tensor_shape.dim.add().size = -1
    with pytest.raises(BadResponse, match="negative dimension"):
        decode_tensor(negative)


def test_a_constant_string_column_travels_as_one_value_and_decodes_to_every_row():
    proto = tensor_proto(np.array(["u7"] * 500, dtype=object))
    assert list(proto.string_val) == [b"u7"]
    assert [d.size for d in proto.tensor_shape.dim] == [500]
    # Our decoder and TensorFlow's own (the fill rule TF Serving applies) give 500 rows back.
    assert decode_tensor(proto).tolist() == [b"u7"] * 500
    tf = pytest.importorskip("tensorflow")
    from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2

    official = tf_tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    assert tf.make_ndarray(official).tolist() == [b"u7"] * 500
    # A column with two distinct values is sent in full.
    mixed = tensor_proto(np.array(["a"] * 499 + ["b"], dtype=object))
    assert len(mixed.string_val) == 500 and mixed.string_val[-1] == b"b"

"""Fast TensorProto <-> numpy conversion with TensorFlow's own parsing rules."""

# `tf.make_tensor_proto` / `tf.make_ndarray` cost tens of microseconds per tensor and go
# through eager TensorFlow; the server converts every request and response, so this
# module works on the protobuf fields directly (measured in benchmarks/bench_model_server.py).
#
# Semantics follow `tensorflow::Tensor::FromProto` and `Tensor::AsProtoField`, which TF
# Serving uses for Predict: `tensor_content` must hold exactly num_elements * itemsize
# bytes; typed `*_val` fields with fewer values than elements are padded with the last
# value (or zeros when empty), extra values are ignored; responses are written into the
# typed fields (`float_val`, `string_val`, ...), never `tensor_content`.

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

from serving.model_server.tensor_dtypes import (
    DT,
    NUMPY_BY_DTYPE,
    VAL_FIELD,
    TensorConversionError,
    dtype_name,
    numpy_dtype,
    tf_dtype,
)
from serving.model_server.tensor_limits import string_proto_bytes

__all__ = [
    "DT",
    "TensorConversionError",
    "TensorTooLargeError",
    "dtype_name",
    "from_ndarray",
    "numpy_dtype",
    "shape_of",
    "tf_dtype",
    "to_ndarray",
]


class TensorTooLargeError(TensorConversionError):
    """Decoding a TensorProto would allocate more than the bytes allowed (``needed`` of them)."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"tensor would decode to {needed} bytes")
        self.needed = needed


# TensorShape::IsValid: at most 254 dimensions, none negative, at most 2**63 - 1 elements.
MAX_DIMS = 254
MAX_ELEMENTS = 2**63 - 1


def shape_of(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    """The dims of a TensorProto; invalid shapes (unknown rank, negative dims) raise."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise TensorConversionError("tensor shape has unknown rank")
    dims = tuple(d.size for d in shape.dim)
    if any(d < 0 for d in dims):
        raise TensorConversionError(f"tensor shape {list(dims)} has a negative dimension")
    return dims


def _decode_string_content(content: bytes, count: int) -> list[bytes]:
    """Decode TF's string `tensor_content` layout: `count` varint lengths, then the bytes."""
    if count > len(content):  # each element takes at least its one-byte length
        raise TensorConversionError("truncated string tensor_content")
    lengths = []
    pos = 0
    for _ in range(count):
        value = shift = 0
        while True:
            if pos >= len(content):
                raise TensorConversionError("truncated string tensor_content")
            byte = content[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        lengths.append(value)
    out = []
    for length in lengths:
        if pos + length > len(content):
            raise TensorConversionError("truncated string tensor_content")
        out.append(content[pos : pos + length])
        pos += length
    if pos != len(content):
        raise TensorConversionError("string tensor_content has trailing bytes")
    return out


def _fill(values: np.ndarray, count: int, dtype: np.dtype) -> np.ndarray:
    """TF's FromProtoField rule: pad with the last value, zero-fill if empty, truncate extras."""
    have = values.shape[0]
    if have == count:
        return values
    if have == 0:
        return np.zeros(count, dtype=dtype)
    if have > count:
        return values[:count]
    return np.concatenate([values, np.full(count - have, values[-1], dtype=dtype)])


# Below this many values, np.fromiter over a repeated field beats np.array on it (measured:
# 0.9 vs 1.8 us at 16 floats; 14.6 vs 2.2 us at 500, where upb's buffer protocol wins).
_FROMITER_MAX = 64


def to_ndarray(proto: tensor_pb2.TensorProto, max_bytes: int | None = None) -> np.ndarray:
    """Convert a TensorProto to a numpy array (strings become an object array of bytes).

    This runs for every input of every request, so the common cases (a typed field holding
    exactly one value per element) take the shortest route: there the array is no larger
    than the values the wire carried.

    Args:
        max_bytes: refuse, before allocating, to pad or zero-fill a tensor past this many
            decoded bytes (strings: their bytes plus 8 per element); None: no bound.

    Raises:
        TensorConversionError: unsupported dtype, invalid shape (TensorShape::IsValid's rules),
            or a tensor_content whose size does not match the shape (TF Serving answers
            "tensor parsing error").
        TensorTooLargeError: the tensor would decode past ``max_bytes``.
    """
    dtype = proto.dtype
    shape = proto.tensor_shape
    dim = shape.dim
    dims: list[int] | None = None  # None: rank 1, the commonest request tensor (no list built)
    if len(dim) == 1:
        count = dim[0].size
    else:
        dims = [d.size for d in dim]
        count = math.prod(dims) if min(dims, default=0) >= 0 else -1
    plain = _PLAIN_FIELD.get(dtype)
    # The common case: a typed field holding one value per element (each upb attribute read
    # costs ~0.2 us, so it is decided with as few as possible).
    if plain is not None and count > 0 and not proto.tensor_content and not shape.unknown_rank:
        field = getattr(proto, plain[0])
        if len(field) == count:
            plain_dtype = plain[1]
            if plain_dtype is None:  # strings: an object array of bytes
                flat = np.fromiter(field, dtype=object, count=count)
            elif count <= _FROMITER_MAX:
                flat = np.fromiter(field, dtype=plain_dtype, count=count)
            else:
                flat = np.array(field, dtype=plain_dtype)
            return flat if dims is None else flat.reshape(dims)
    np_dtype = NUMPY_BY_DTYPE.get(dtype)
    if np_dtype is None:
        raise TensorConversionError(f"unsupported tensor dtype {dtype_name(dtype)}")
    if dims is None:
        dims = [count]
    if shape.unknown_rank or (dims and min(dims) < 0):
        shape_of(proto)  # raises the precise error
    if len(dims) > MAX_DIMS:
        raise TensorConversionError(f"tensor shape has {len(dims)} dimensions, more than {MAX_DIMS}")
    if count > MAX_ELEMENTS:
        raise TensorConversionError("tensor shape has more than 2**63 - 1 elements")
    content = proto.tensor_content
    if dtype == DT.DT_STRING:
        if max_bytes is not None:
            needed = string_proto_bytes(proto, count)
            if needed > max_bytes:
                raise TensorTooLargeError(needed)
        values = _decode_string_content(content, count) if content else proto.string_val
        have = len(values)
        flat = np.empty(count, dtype=object)
        if have >= count:
            flat[:] = list(values[:count])
        elif have:
            flat[:have] = list(values)
            flat[have:].fill(values[-1])
        else:
            flat.fill(b"")
        return flat.reshape(dims)
    if content:
        if len(content) != count * np_dtype.itemsize:
            raise TensorConversionError(
                f"tensor_content has {len(content)} bytes, shape {dims} of "
                f"{dtype_name(dtype)} needs {count * np_dtype.itemsize}"
            )
        return np.frombuffer(content, dtype=np_dtype).reshape(dims)
    if max_bytes is not None and count * np_dtype.itemsize > max_bytes:
        raise TensorTooLargeError(count * np_dtype.itemsize)
    if count == 0:
        return np.zeros(dims, dtype=np_dtype)
    raw = _typed_values(getattr(proto, VAL_FIELD[dtype]), dtype, np_dtype)
    return _fill(raw, count, np_dtype).reshape(dims)


# dtypes whose typed field does not hold one plain number per element (half_val holds the
# bits; complex fields hold real and imaginary parts; int_val holds int32 values for the
# narrower integers, which need a cast).
_NARROW_INT_DTYPES = frozenset({DT.DT_UINT8, DT.DT_INT8, DT.DT_INT16, DT.DT_UINT16})
_PACKED_DTYPES = (
    frozenset({DT.DT_HALF, DT.DT_BFLOAT16, DT.DT_COMPLEX64, DT.DT_COMPLEX128}) | _NARROW_INT_DTYPES
)

# to_ndarray's common case: dtype -> (typed field, numpy dtype; None for strings), for the
# dtypes whose field holds one plain value per element.
_PLAIN_FIELD: dict[int, tuple[str, np.dtype | None]] = {
    dtype: (VAL_FIELD[dtype], None if dtype == DT.DT_STRING else np_dtype)
    for dtype, np_dtype in NUMPY_BY_DTYPE.items()
    if dtype in VAL_FIELD and dtype not in _PACKED_DTYPES
}


def _typed_values(field: Any, dtype: int, np_dtype: np.dtype) -> np.ndarray:
    """The values of a numeric typed field (``float_val``, ``half_val`` ...) as a flat array.

    ``int_val`` holds int32 values for the narrower integer dtypes; TensorFlow casts them
    (300 as uint8 is 44), where numpy would refuse them.
    """
    if dtype in _NARROW_INT_DTYPES:
        return np.array(field, dtype=np.int32).astype(np_dtype)
    if dtype in (DT.DT_HALF, DT.DT_BFLOAT16):
        return np.array(field, dtype=np.uint32).astype(np.uint16).view(np_dtype)
    if dtype in (DT.DT_COMPLEX64, DT.DT_COMPLEX128):
        parts = np.array(field, dtype=np.float32 if dtype == DT.DT_COMPLEX64 else np.float64)
        if parts.shape[0] % 2:
            raise TensorConversionError("complex tensor has an odd number of real/imaginary values")
        return parts.view(np_dtype)
    return np.array(field, dtype=np_dtype)


def _set_shape(shape: tensor_shape_pb2.TensorShapeProto, dims: Iterable[int]) -> None:
    """Write dims into a TensorShapeProto."""
    add = shape.dim.add
    for d in dims:
        add(size=d)


def _as_bytes_list(flat: np.ndarray) -> list[bytes]:
    """Object/str/bytes array -> list of bytes (str is encoded as UTF-8, like tf.constant)."""
    items = flat.tolist()
    if flat.dtype.kind == "S":
        return items
    return [x if isinstance(x, bytes) else str(x).encode("utf-8") for x in items]


def from_ndarray(
    array: np.ndarray,
    *,
    out: tensor_pb2.TensorProto | None = None,
    use_tensor_content: bool = False,
) -> tensor_pb2.TensorProto:
    """Write a numpy array into a TensorProto as TF's `Tensor::AsProtoField` does.

    Args:
        array: the values; str/bytes/object arrays become DT_STRING.
        out: an existing (empty) TensorProto to fill, e.g. `response.outputs[name]`, which
            avoids a copy of a large message.
        use_tensor_content: write numeric data as raw `tensor_content` bytes
            (`AsProtoTensorContent`) instead of the typed repeated field.

    Returns:
        The filled proto (`out` when given).
    """
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto() if out is None else out
    dtype = tf_dtype(array)
    proto.dtype = dtype
    _set_shape(proto.tensor_shape, array.shape)
    flat = array.reshape(-1)
    if dtype == DT.DT_STRING:
        proto.string_val.extend(_as_bytes_list(flat))
        return proto
    if use_tensor_content:
        proto.tensor_content = np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<")).tobytes()
        return proto
    field = getattr(proto, VAL_FIELD[dtype])
    if dtype in (DT.DT_HALF, DT.DT_BFLOAT16):
        field.extend(flat.view(np.uint16).tolist())
    elif dtype in (DT.DT_COMPLEX64, DT.DT_COMPLEX128):
        real = np.float32 if dtype == DT.DT_COMPLEX64 else np.float64
        field.extend(np.ascontiguousarray(flat).view(real).tolist())
    else:
        field.extend(flat.tolist())
    return proto

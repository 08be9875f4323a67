"""TensorFlow's DataType enum against numpy's dtypes, and which TensorProto field holds each."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from tensorflow.core.framework import types_pb2

DT = types_pb2

# TF DataType enum -> numpy dtype (object for DT_STRING: numpy arrays of `bytes`).
NUMPY_BY_DTYPE: dict[int, np.dtype] = {
    DT.DT_FLOAT: np.dtype(np.float32),
    DT.DT_DOUBLE: np.dtype(np.float64),
    DT.DT_INT32: np.dtype(np.int32),
    DT.DT_UINT8: np.dtype(np.uint8),
    DT.DT_INT16: np.dtype(np.int16),
    DT.DT_INT8: np.dtype(np.int8),
    DT.DT_STRING: np.dtype(object),
    DT.DT_COMPLEX64: np.dtype(np.complex64),
    DT.DT_INT64: np.dtype(np.int64),
    DT.DT_BOOL: np.dtype(np.bool_),
    DT.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    DT.DT_UINT16: np.dtype(np.uint16),
    DT.DT_COMPLEX128: np.dtype(np.complex128),
    DT.DT_HALF: np.dtype(np.float16),
    DT.DT_UINT32: np.dtype(np.uint32),
    DT.DT_UINT64: np.dtype(np.uint64),
}

# numpy dtype -> TF DataType enum.
DTYPE_BY_NUMPY: dict[np.dtype, int] = {v: k for k, v in NUMPY_BY_DTYPE.items()}

# Which repeated field of TensorProto holds the values of each dtype (AsProtoField layout).
VAL_FIELD: dict[int, str] = {
    DT.DT_FLOAT: "float_val",
    DT.DT_DOUBLE: "double_val",
    DT.DT_INT32: "int_val",
    DT.DT_UINT8: "int_val",
    DT.DT_INT16: "int_val",
    DT.DT_INT8: "int_val",
    DT.DT_UINT16: "int_val",
    DT.DT_STRING: "string_val",
    DT.DT_COMPLEX64: "scomplex_val",
    DT.DT_COMPLEX128: "dcomplex_val",
    DT.DT_INT64: "int64_val",
    DT.DT_BOOL: "bool_val",
    DT.DT_HALF: "half_val",
    DT.DT_BFLOAT16: "half_val",
    DT.DT_UINT32: "uint32_val",
    DT.DT_UINT64: "uint64_val",
}


class TensorConversionError(ValueError):
    """A TensorProto cannot be turned into an array (TF's "tensor parsing error")."""


def dtype_name(dtype: int) -> str:
    """TensorFlow's `DataTypeString`: DT_FLOAT -> "float", DT_STRING -> "string"."""
    try:
        name = types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"unknown dtype enum ({dtype})"
    if dtype == DT.DT_HALF:
        return "half"
    return name[3:].lower() if name.startswith("DT_") else name


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype used for a TF dtype; raises TensorConversionError if unsupported."""
    try:
        return NUMPY_BY_DTYPE[dtype]
    except KeyError:
        raise TensorConversionError(f"unsupported tensor dtype {dtype_name(dtype)}") from None


def tf_dtype(array: np.ndarray) -> int:
    """The TF DataType enum for a numpy array (str/bytes arrays map to DT_STRING)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return DT.DT_STRING
    try:
        return DTYPE_BY_NUMPY[array.dtype]
    except KeyError:
        raise TensorConversionError(f"numpy dtype {array.dtype} has no TensorFlow equivalent") from None

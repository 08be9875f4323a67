"""Warmup records: a TFRecord of PredictionLog protos that TF Serving replays with --enable_model_warmup.

Format as in TF Serving's ``tensorflow_serving/example/resnet_warmup.py`` and
``servables/tensorflow/saved_model_warmup_util.cc``: the file is
``assets.extra/tf_serving_warmup_requests``, each record a serialized ``PredictionLog`` whose
``predict_log.request`` is a complete ``PredictRequest``. Requests are built from real rows so
warmup exercises the real lookup tables and the batch sizes that matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.batches import encode_strings, take_rows
from export.errors import ExportError
from export.signatures import SERVING_DEFAULT

WARMUP_FILENAME = "tf_serving_warmup_requests"
DEFAULT_WARMUP_BATCH_SIZES: tuple[int, ...] = (1, 8, 64)
MAX_WARMUP_RECORDS = 1000  # TF Serving refuses warmup files with more records than this


def build_warmup_logs(
    inputs: Mapping[str, np.ndarray],
    model_name: str,
    *,
    batch_sizes: Sequence[int] = DEFAULT_WARMUP_BATCH_SIZES,
    signature_name: str = SERVING_DEFAULT,
) -> list[Any]:
    """One PredictionLog per batch size, rows taken consecutively (wrapping) from ``inputs``.

    Args:
        inputs: real rows, feature name -> rank-1 wire-dtype array (see ``export.batches``).
        model_name: goes into ``model_spec.name``, as a client request would carry it.
        batch_sizes: one request per entry.
        signature_name: the signature the requests call.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if not batch_sizes or len(batch_sizes) > MAX_WARMUP_RECORDS or any(b < 1 for b in batch_sizes):
        raise ExportError(
            f"warmup batch sizes must be 1..{MAX_WARMUP_RECORDS} positive ints, got {batch_sizes}"
        )
    rows = len(next(iter(inputs.values())))
    if rows == 0:
        raise ExportError("warmup needs at least one real row, got an empty frame")
    logs = []
    start = 0
    for size in batch_sizes:
        index = (start + np.arange(size)) % rows
        start = int((start + size) % rows)
        batch = take_rows(inputs, index)
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
        )
        for name, values in batch.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(_wire_values(values)))
        logs.append(
            prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        )
    return logs


def _wire_values(values: np.ndarray) -> np.ndarray:
    return encode_strings(values) if values.dtype.kind in ("O", "U") else values


def write_warmup(path: Path, logs: Sequence[Any]) -> Path:
    """Write the PredictionLogs as a TFRecord file (uncompressed, as TF Serving reads it)."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup(path: Path) -> list[Any]:
    """Parse every record of a warmup file back into PredictionLog protos."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    if not path.is_file():
        raise ExportError(f"warmup file {path} not found")
    logs = []
    for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception as exc:  # protobuf DecodeError
            raise ExportError(f"{path}: record {i} is not a PredictionLog: {exc}") from exc
        if not log.HasField("predict_log"):
            raise ExportError(f"{path}: record {i} holds no predict_log")
        logs.append(log)
    return logs


def request_inputs(log: Any) -> dict[str, np.ndarray]:
    """A PredictionLog's request tensors as numpy arrays (strings as bytes objects)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in log.predict_log.request.inputs.items()}

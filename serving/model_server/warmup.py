"""Replay of ``assets.extra/tf_serving_warmup_requests`` before a version starts serving."""

from __future__ import annotations

from pathlib import Path

from serving.model_server.errors import ServingError
from serving.model_server.servable import Servable

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def warmup_path(version_dir: Path) -> Path:
    """Where TF Serving looks for a version's warmup records."""
    return version_dir / WARMUP_FILE


def replay_warmup(servable: Servable, iterations: int = 1) -> int:
    """Run every PredictionLog record of the servable's warmup file ``iterations`` times.

    Warmup triggers the lazy one-time work (kernel selection, callable creation, table
    initialisation) so the first real request after a swap is not slow. As in TF Serving, a
    failing record fails the load.

    Returns:
        The number of records replayed (0 when there is no warmup file).

    Raises:
        ServingError: a record is unreadable, has no supported log type, there are more than
            MAX_WARMUP_RECORDS, or a request fails.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = warmup_path(servable.path)
    if not path.is_file():
        return 0
    records: list[prediction_log_pb2.PredictionLog] = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            if len(records) >= MAX_WARMUP_RECORDS:
                raise ServingError.invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            log = prediction_log_pb2.PredictionLog()
            log.ParseFromString(raw)
            records.append(log)
    except tf.errors.OpError as exc:
        raise ServingError.data_loss(f"Error reading warmup data at {path}: {exc.message}") from None
    for _ in range(max(1, iterations)):
        for log in records:
            _replay_one(servable, log, path)
    return len(records)


def _replay_one(servable: Servable, log: object, path: Path) -> None:
    import tensorflow as tf

    kind = log.WhichOneof("log_type")  # type: ignore[attr-defined]
    if kind == "predict_log":
        request = log.predict_log.request  # type: ignore[attr-defined]
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        servable.run(request.model_spec.signature_name, inputs, list(request.output_filter))
    elif kind == "classify_log":
        request = log.classify_log.request  # type: ignore[attr-defined]
        servable.classify(request.model_spec.signature_name, request.input)
    elif kind == "regress_log":
        request = log.regress_log.request  # type: ignore[attr-defined]
        servable.regress(request.model_spec.signature_name, request.input)
    elif kind == "multi_inference_log":
        servable.multi_inference(log.multi_inference_log.request)  # type: ignore[attr-defined]
    else:
        raise ServingError.unimplemented(f"Unsupported log_type for warmup: {kind} in {path}")

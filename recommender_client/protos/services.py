"""Hand-built gRPC stubs for TF Serving's PredictionService and ModelService, on our messages."""

from __future__ import annotations

import grpc

from recommender_client.protos import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

# Method paths are TF Serving's (package ``tensorflow.serving``), not ours: the server routes by them.
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"

# The Any in GetModelMetadataResponse.metadata["signature_def"] names the official message.
SIGNATURE_DEF_MAP_TYPE_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"


class PredictionServiceStub:
    """Callables for ``tensorflow.serving.PredictionService`` (Predict and GetModelMetadata).

    Classify, Regress and MultiInference take tf.Example inputs, which this project never sends.
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self.Predict = channel.unary_unary(
            PREDICT_METHOD,
            request_serializer=predict_pb2.PredictRequest.SerializeToString,
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )
        self.GetModelMetadata = channel.unary_unary(
            GET_MODEL_METADATA_METHOD,
            request_serializer=get_model_metadata_pb2.GetModelMetadataRequest.SerializeToString,
            response_deserializer=get_model_metadata_pb2.GetModelMetadataResponse.FromString,
        )


class ModelServiceStub:
    """Callables for ``tensorflow.serving.ModelService`` (GetModelStatus; config reload is not used)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.GetModelStatus = channel.unary_unary(
            GET_MODEL_STATUS_METHOD,
            request_serializer=get_model_status_pb2.GetModelStatusRequest.SerializeToString,
            response_deserializer=get_model_status_pb2.GetModelStatusResponse.FromString,
        )

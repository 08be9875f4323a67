"""A TensorFlow-free TF Serving client: gRPC and REST behind one interface, typed errors, deadlines.

Importing this package never imports TensorFlow; messages come from ``recommender_client.protos``.
"""

from recommender_client.client.base import RetryPolicy, TFServingClient
from recommender_client.client.errors import (
    BadResponse,
    InvalidRequest,
    ModelNotFound,
    ServingTimeout,
    ServingUnavailable,
    TFServingError,
)
from recommender_client.client.grpc_client import GrpcClient
from recommender_client.client.metadata import (
    ModelMetadata,
    ModelVersionStatus,
    Outputs,
    SignatureSpec,
    TensorSpec,
)
from recommender_client.client.requests import build_request_columns, validate_outputs
from recommender_client.client.rest_client import RestClient

__all__ = [
    "BadResponse",
    "GrpcClient",
    "InvalidRequest",
    "ModelMetadata",
    "ModelNotFound",
    "ModelVersionStatus",
    "Outputs",
    "RestClient",
    "RetryPolicy",
    "ServingTimeout",
    "ServingUnavailable",
    "SignatureSpec",
    "TFServingClient",
    "TFServingError",
    "TensorSpec",
    "build_request_columns",
    "validate_outputs",
]

"""Build TF Serving request messages and turn response messages into plain Python values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from google.protobuf import any_pb2

from recommender_client.client.errors import BadResponse, InvalidRequest
from recommender_client.client.metadata import (
    ModelMetadata,
    ModelVersionStatus,
    Outputs,
    SignatureSpec,
    TensorSpec,
)
from recommender_client.client.tensors import decode_tensor, dtype_name, fill_tensor
from recommender_client.protos import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    meta_graph_pb2,
    model_pb2,
    predict_pb2,
    status_pb2,
)
from recommender_client.protos.services import SIGNATURE_DEF_MAP_TYPE_URL


def model_spec(
    out: model_pb2.ModelSpec,
    model_name: str,
    *,
    signature_name: str = "",
    version: int | None = None,
    version_label: str | None = None,
) -> None:
    """Fill a ModelSpec; version and version_label are one oneof, so giving both is an error."""
    version = check_model_spec(model_name, version=version, version_label=version_label)
    out.name = model_name
    if signature_name:
        out.signature_name = signature_name
    if version is not None:
        out.version.value = version
    elif version_label is not None:
        out.version_label = version_label


def check_model_spec(
    model_name: str, *, version: int | None = None, version_label: str | None = None
) -> int | None:
    """Validate a model reference the same way for gRPC and REST; returns ``version`` as an int.

    Raises:
        InvalidRequest: empty ``model_name``, both ``version`` and ``version_label``, or a
            ``version`` that is not a non-negative int.
    """
    if not model_name:
        raise InvalidRequest("model_name must be a non-empty string")
    if version is not None and version_label is not None:
        raise InvalidRequest(f"give version ({version}) or version_label ({version_label!r}), not both")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int | np.integer) or version < 0:
        raise InvalidRequest(f"version must be a non-negative int, got {version!r}")
    return int(version)


def build_metadata_request(
    model_name: str, *, version: int | None = None, version_label: str | None = None
) -> get_model_metadata_pb2.GetModelMetadataRequest:
    """A GetModelMetadataRequest for the signatures (the only metadata field TF Serving serves)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    model_spec(request.model_spec, model_name, version=version, version_label=version_label)
    request.metadata_field.append("signature_def")
    return request


def build_predict_request(
    inputs: Mapping[str, np.ndarray],
    *,
    model_name: str,
    signature_name: str = "serving_default",
    version: int | None = None,
    version_label: str | None = None,
    output_filter: Iterable[str] | None = None,
) -> predict_pb2.PredictRequest:
    """A PredictRequest with every input encoded in place (no intermediate TensorProto copies)."""
    if not inputs:
        raise InvalidRequest("predict needs at least one input tensor")
    request = predict_pb2.PredictRequest()
    model_spec(
        request.model_spec,
        model_name,
        signature_name=signature_name,
        version=version,
        version_label=version_label,
    )
    for name, array in inputs.items():
        fill_tensor(request.inputs[name], array, name=name)
    if output_filter is not None:
        request.output_filter.extend(output_filter)
    return request


def outputs_to_arrays(
    outputs: Mapping[str, object], *, output_filter: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Decode a PredictResponse's outputs map; every name in ``output_filter`` must be present."""
    decoded = {name: decode_tensor(tensor, name=name) for name, tensor in outputs.items()}  # type: ignore[arg-type]
    return select_outputs(decoded, output_filter)


def prediction_from_response(
    response: predict_pb2.PredictResponse, *, model_name: str, output_filter: Iterable[str] | None = None
) -> Outputs:
    """Decode a PredictResponse, keeping the ``model_spec`` the server says answered it."""
    spec = response.model_spec
    return Outputs(
        outputs_to_arrays(response.outputs, output_filter=output_filter),
        model_name=spec.name or model_name,
        version=spec.version.value if spec.HasField("version") else None,
    )


def select_outputs(
    decoded: dict[str, np.ndarray], output_filter: Iterable[str] | None
) -> dict[str, np.ndarray]:
    """Keep the requested outputs, raising BadResponse naming any the server did not return."""
    if output_filter is None:
        return decoded
    wanted = list(output_filter)
    missing = [n for n in wanted if n not in decoded]
    if missing:
        raise BadResponse(f"response lacks requested outputs {missing} (has {sorted(decoded)})")
    return {n: decoded[n] for n in wanted}


def status_list(response: get_model_status_pb2.GetModelStatusResponse) -> list[ModelVersionStatus]:
    """GetModelStatusResponse -> one ModelVersionStatus per version, in the server's order."""
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    out = []
    for item in response.model_version_status:
        try:
            state = state_name(item.state)
            code = status_pb2.Code.Name(item.status.error_code)
        except ValueError as exc:
            raise BadResponse(f"model status for version {item.version}: {exc}") from None
        out.append(ModelVersionStatus(item.version, state, code, item.status.error_message))
    return out


def _tensor_spec(info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    shape_proto = info.tensor_shape
    shape = (
        None if shape_proto.unknown_rank else tuple(d.size if d.size >= 0 else None for d in shape_proto.dim)
    )
    return TensorSpec(dtype_name(info.dtype), shape)


def signature_specs(
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
) -> dict[str, SignatureSpec]:
    """SignatureDefMap.signature_def -> plain SignatureSpec objects by signature name."""
    return {
        key: SignatureSpec(
            inputs={n: _tensor_spec(i) for n, i in sorted(sig.inputs.items())},
            outputs={n: _tensor_spec(o) for n, o in sorted(sig.outputs.items())},
            method_name=sig.method_name,
        )
        for key, sig in signature_defs.items()
    }


def pack_signature_def_map(
    signature_map: get_model_metadata_pb2.SignatureDefMap, out: any_pb2.Any | None = None
) -> any_pb2.Any:
    """Wrap our SignatureDefMap in an Any carrying the OFFICIAL type URL (Any.Pack would use ours)."""
    out = any_pb2.Any() if out is None else out
    out.type_url = SIGNATURE_DEF_MAP_TYPE_URL
    out.value = signature_map.SerializeToString()
    return out


def metadata_from_response(response: get_model_metadata_pb2.GetModelMetadataResponse) -> ModelMetadata:
    """Unpack ``metadata["signature_def"]`` (an Any of tensorflow.serving.SignatureDefMap)."""
    if "signature_def" not in response.metadata:
        raise BadResponse(f"model metadata lacks 'signature_def' (has {sorted(response.metadata)})")
    packed = response.metadata["signature_def"]
    if packed.type_url.rsplit("/", 1)[-1] != SIGNATURE_DEF_MAP_TYPE_URL.rsplit("/", 1)[-1]:
        raise BadResponse(f"model metadata 'signature_def' holds {packed.type_url!r}, not a SignatureDefMap")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    try:
        signature_map.ParseFromString(packed.value)
    except Exception as exc:  # protobuf raises DecodeError (a plain Exception subclass)
        raise BadResponse(f"model metadata 'signature_def' does not parse: {exc}") from None
    spec = response.model_spec
    version = spec.version.value if spec.HasField("version") else None
    return ModelMetadata(spec.name, version, signature_specs(signature_map.signature_def))

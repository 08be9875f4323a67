"""TF Lite servables: TF Serving's TF Lite test models, their SignatureDefs, the loader's choice, errors."""

# Expected values come from tensorflow_serving's tflite_session_test.cc and
# tensorflow_model_server_test.py (testPredictOnTfLite, testPredictWithSignatureDefOnTfLite):
# half_plus_two is y = 0.5x + 2, so [1, 2, 5] -> [2.5, 3, 4.5] and TF Serving's request [2] -> 3.

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from flatbuffers import flexbuffers  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow.lite.python import schema_py_generated as schema  # noqa: E402
from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.model_server.batching import Batcher  # noqa: E402
from serving.model_server.batching_options import BatchingOptions  # noqa: E402
from serving.model_server.config import parse_model_server_config  # noqa: E402
from serving.model_server.errors import ServingError  # noqa: E402
from serving.model_server.grpc_service import create_grpc_server  # noqa: E402
from serving.model_server.loader import load_servable  # noqa: E402
from serving.model_server.manager import ModelManager  # noqa: E402
from serving.model_server.rest import RestApi  # noqa: E402
from serving.model_server.servable import Servable  # noqa: E402
from serving.model_server.tensors import from_ndarray, to_ndarray  # noqa: E402
from serving.model_server.tflite_servable import TfLiteServable  # noqa: E402

PLAIN, WITH_SIGDEF = "saved_model_half_plus_two_tflite", "saved_model_half_plus_two_tflite_with_sigdef"

# tflite_session_test.cc BasicTest / ModelFromLegacyConverterWithSigdef: the input's tensor name
# is "x" (no SignatureDef: one is built from the interpreter) or "tflite_input" (the stored
# SignatureDef says "tflite_input:0"; the converter dropped the suffix).
EXPECTED_SIGNATURE = """
inputs {{ key: "x" value {{ name: "{input}" dtype: DT_FLOAT tensor_shape {{ dim {{ size: 1 }} dim {{ size: 1 }} }} }} }}
outputs {{ key: "y" value {{ name: "y" dtype: DT_FLOAT tensor_shape {{ dim {{ size: 1 }} dim {{ size: 1 }} }} }} }}
method_name: "tensorflow/serving/predict"
"""


def version_dir(testdata: Path, model: str) -> Path:
    return testdata / model / "00000123"


def signature(text: str) -> meta_graph_pb2.SignatureDef:
    return text_format.Parse(text, meta_graph_pb2.SignatureDef())


def rewrite_model(
    source: Path,
    target: Path,
    *,
    metadata: bytes | None = None,
    suffix: str = "",
    input_type: int | None = None,
) -> Path:
    """A copy of a .tflite model with its tensors renamed (name + suffix), given ``metadata``
    a ``signature_defs_metadata`` buffer holding those bytes, given ``input_type`` that
    schema TensorType for its input."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(source.read_bytes()))
    graph = model.subgraphs[0]
    for tensor in graph.tensors:
        tensor.name = tensor.name.decode() + suffix
    if input_type is not None:
        graph.tensors[graph.inputs[0]].type = input_type
    if metadata is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(metadata, np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = "signature_defs_metadata", len(model.buffers) - 1
        model.metadata.append(entry)
    target.mkdir(parents=True)
    (target / "model.tflite").write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return target


def signature_defs_metadata(signatures: dict[str, meta_graph_pb2.SignatureDef]) -> bytes:
    """The FlexBuffer map TF Lite's SetSignatureDefMap writes (key -> serialized SignatureDef)."""
    builder = flexbuffers.Builder()
    with builder.Map():
        for key, sig in signatures.items():
            builder.Key(key)
            builder.String(sig.SerializeToString().decode("utf-8"))  # ASCII-only test protos
    return bytes(builder.Finish())


@pytest.fixture(scope="module", params=[PLAIN, WITH_SIGDEF])
def servable(request: pytest.FixtureRequest, tfserving_testdata: Path) -> Iterator[Servable]:
    loaded = load_servable("default", 123, version_dir(tfserving_testdata, request.param), prefer_tflite=True)
    yield loaded
    loaded.close()


def test_predict_resizes_the_input_to_the_request(servable: Servable) -> None:
    outputs = servable.run("", {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    np.testing.assert_array_equal(outputs["y"], np.array([2.5, 3.0, 4.5], np.float32))
    # TF Serving's gRPC test request: x = [2.0] of shape [1], output y.
    outputs = servable.run("serving_default", {"x": np.array([2.0], np.float32)}, ["y"])
    np.testing.assert_array_equal(outputs["y"], np.array([3.0], np.float32))
    outputs = servable.run("", {"x": np.array([[4.0], [6.0]], np.float32)})
    np.testing.assert_array_equal(outputs["y"], np.array([[4.0], [5.0]], np.float32))


def test_signature_defs_are_tf_servings(servable: Servable) -> None:
    tensor = "tflite_input" if WITH_SIGDEF in str(servable.path) else "x"
    assert servable.signature_def_map() == {
        "serving_default": signature(EXPECTED_SIGNATURE.format(input=tensor))
    }
    assert not servable.is_tf2


def test_request_errors_have_the_servables_texts(servable: Servable) -> None:
    with pytest.raises(ServingError, match=r"^Expects arg\[0\] to be float but int64 is provided$"):
        servable.run("", {"x": np.array([1, 2], np.int64)})
    with pytest.raises(
        ServingError, match=r"^Signature input alias: x\(feed name: (x|tflite_input)\) not found"
    ):
        servable.run("", {"z": np.array([1.0], np.float32)})
    with pytest.raises(ServingError, match=r"^input size does not match signature: 2!=1 "):
        servable.run("", {"x": np.array([1.0], np.float32), "z": np.array([1.0], np.float32)})
    with pytest.raises(ServingError, match=r'^Serving signature key "other" not found\.$'):
        servable.run("other", {"x": np.array([1.0], np.float32)})
    with pytest.raises(ServingError, match=r"^output tensor alias not found in signature: z "):
        servable.run("", {"x": np.array([1.0], np.float32)}, ["z"])


def test_concurrent_calls_share_a_small_pool(tfserving_testdata: Path) -> None:
    """Each interpreter keeps the dims it was last resized to: 12 threads with different
    batch sizes on 2 interpreters must still get their own rows back."""
    loaded = load_servable(
        "default", 123, version_dir(tfserving_testdata, PLAIN), prefer_tflite=True, num_tflite_pools=2
    )
    failures: list[str] = []

    def call(rows: int) -> None:
        for _ in range(20):
            x = np.arange(rows, dtype=np.float32) + rows
            y = loaded.run("", {"x": x})["y"]
            if y.shape != (rows,) or not np.array_equal(y, 0.5 * x + 2):
                failures.append(f"{rows} rows: {y}")

    threads = [threading.Thread(target=call, args=(rows,)) for rows in range(1, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    loaded.close()
    with pytest.raises(ServingError, match=r"^Servable default version 123 is unloaded$"):
        loaded.run("", {"x": np.array([1.0], np.float32)})


def test_batcher_merges_requests_into_one_interpreter_run(servable: Servable) -> None:
    """Two 2-row requests fill a 4-row batch long before its 30 s timeout: one resized run."""
    batcher = Batcher(BatchingOptions(max_batch_size=4, batch_timeout_micros=30_000_000, num_batch_threads=1))
    try:
        inputs = [np.array([1.0, 2.0], np.float32), np.array([5.0, 6.0], np.float32)]
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(batcher.run, servable, "", {"x": x}) for x in inputs]
            results = [future.result(timeout=20)["y"].tolist() for future in futures]
    finally:
        batcher.stop()
    assert results == [[2.5, 3.0], [4.5, 5.0]]


def test_loader_prefers_tflite_only_when_asked_and_present(tfserving_testdata: Path, tmp_path: Path) -> None:
    both = tmp_path / "123"
    shutil.copytree(version_dir(tfserving_testdata, "saved_model_half_plus_two_cpu"), both)
    shutil.copy(version_dir(tfserving_testdata, PLAIN) / "model.tflite", both)
    saved_model_only = version_dir(tfserving_testdata, "saved_model_half_plus_two_cpu")
    # The SavedModel has classify/regress signatures and "x:0" names; the TF Lite model only serving_default.
    chosen = {
        (prefer, path.name): load_servable("m", 123, path, prefer_tflite=prefer)
        for prefer in (True, False)
        for path in (both, saved_model_only)
    }
    assert isinstance(chosen[(True, "123")], TfLiteServable)
    assert chosen[(True, "123")].signature_def_map()["serving_default"].inputs["x"].name == "x"
    for key in ((False, "123"), (True, "00000123"), (False, "00000123")):
        assert not isinstance(chosen[key], TfLiteServable)
        assert chosen[key].signature_def_map()["serving_default"].inputs["x"].name == "x:0"
        assert {"classify_x_to_y", "regress_x_to_y"} <= set(chosen[key].signature_def_map())
    for loaded in chosen.values():
        loaded.close()


def test_loader_passes_saved_model_tags_to_saved_models_only(tfserving_testdata: Path) -> None:
    saved_model = version_dir(tfserving_testdata, "saved_model_half_plus_two_cpu")
    with pytest.raises(
        ServingError, match=r"^Could not find meta graph def matching supplied tags: \{ serve tpu \}\."
    ):
        load_servable("m", 1, saved_model, saved_model_tags=("tpu", "serve"))
    default = load_servable("m", 1, saved_model, saved_model_tags=())  # empty means serve, as in TF
    assert default.signature_def_map()["serving_default"].inputs["x"].name == "x:0"
    # A TF Lite model ignores the tags, as in TF Serving.
    loaded = load_servable(
        "m", 1, version_dir(tfserving_testdata, PLAIN), prefer_tflite=True, saved_model_tags=("gpu",)
    )
    assert loaded.run("", {"x": np.array([8.0], np.float32)})["y"].tolist() == [6.0]


def test_legacy_suffix_is_dropped_from_built_signature_keys(tfserving_testdata: Path, tmp_path: Path) -> None:
    """Tensors named "x:0"/"y:0" (no stored SignatureDef): keys x and y, names kept whole."""
    path = rewrite_model(version_dir(tfserving_testdata, PLAIN) / "model.tflite", tmp_path / "1", suffix=":0")
    loaded = TfLiteServable("m", 1, path)
    sig = loaded.signature_def_map()["serving_default"]
    assert (sig.inputs["x"].name, sig.outputs["y"].name) == ("x:0", "y:0")
    np.testing.assert_array_equal(
        loaded.run("", {"x": np.array([1.0, 2.0, 5.0], np.float32)})["y"], [2.5, 3, 4.5]
    )


def test_stored_signature_defs_are_checked(tfserving_testdata: Path, tmp_path: Path) -> None:
    source = version_dir(tfserving_testdata, PLAIN) / "model.tflite"
    two = {
        "first": signature(
            'inputs { key: "a" value { name: "x:0" } } outputs { key: "b" value { name: "y" } }'
        ),
        "second": signature(
            'inputs { key: "c" value { name: "x" } } outputs { key: "d" value { name: "y:0" } }'
        ),
    }
    loaded = TfLiteServable(
        "m", 1, rewrite_model(source, tmp_path / "1", metadata=signature_defs_metadata(two))
    )
    assert {key: (sig.inputs, sig.outputs) for key, sig in loaded.signature_def_map().items()} == {
        "first": ({"a": meta_graph_pb2.TensorInfo(name="x")}, {"b": meta_graph_pb2.TensorInfo(name="y")}),
        "second": ({"c": meta_graph_pb2.TensorInfo(name="x")}, {"d": meta_graph_pb2.TensorInfo(name="y")}),
    }
    with pytest.raises(ServingError, match=r'^Serving signature key "serving_default" not found\.$'):
        loaded.run("", {"a": np.array([1.0], np.float32)})
    np.testing.assert_array_equal(loaded.run("second", {"c": np.array([6.0], np.float32)})["d"], [5.0])

    unknown = {"serving_default": signature('inputs { key: "a" value { name: "nope:0" } }')}
    path = rewrite_model(source, tmp_path / "2", metadata=signature_defs_metadata(unknown))
    with pytest.raises(
        ServingError, match=r"^Unknown tensor 'nope:0'\.\n\tSignature input a references an unknown tensor$"
    ):
        TfLiteServable("m", 1, path)
    path = rewrite_model(source, tmp_path / "3", metadata=b"\x00")
    with pytest.raises(
        ServingError,
        match=r"^Invalid SignatureDefs found in TfLite model: Error reading signature def map: Invalid flexbuffer data$",
    ) as error:
        TfLiteServable("m", 1, path)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unservable_models_fail_the_load_with_tf_servings_texts(
    tfserving_testdata: Path, tmp_path: Path
) -> None:
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer model")
    with pytest.raises(ServingError, match=r"^Cannot build FlatBufferModel from buffer\.$"):
        TfLiteServable("m", 1, tmp_path)
    source = version_dir(tfserving_testdata, PLAIN) / "model.tflite"
    path = rewrite_model(source, tmp_path / "1", input_type=schema.TensorType.FLOAT64)
    # TfLiteTypeToTfType knows no float64; kTfLiteFloat64 is 11 in TF Lite's C API.
    with pytest.raises(ServingError, match=r"^Unknown TfLite type: 11$"):
        TfLiteServable("m", 1, path)


@pytest.fixture()
def manager(tfserving_testdata: Path) -> Iterator[ModelManager]:
    config = parse_model_server_config(
        f'model_config_list {{ config {{ name: "default" base_path: "{tfserving_testdata / WITH_SIGDEF}" model_platform: "tensorflow" }} }}'
    )
    running = ModelManager(
        config, poll_wait_seconds=0, servable_factory=functools.partial(load_servable, prefer_tflite=True)
    )
    running.start()
    yield running
    running.stop()


def test_grpc_and_rest_faces_serve_tflite(manager: ModelManager) -> None:
    server, port = create_grpc_server(manager, bind_address="127.0.0.1", port=0)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "default"
            request.model_spec.signature_name = "serving_default"
            request.inputs["x"].CopyFrom(from_ndarray(np.array([2.0], np.float32)))
            response = stub.Predict(request, timeout=30)
            metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            metadata_request.model_spec.name = "default"
            metadata = stub.GetModelMetadata(metadata_request, timeout=30)
    finally:
        server.stop(None)
    assert list(response.outputs["y"].float_val) == [3.0]
    np.testing.assert_array_equal(to_ndarray(response.outputs["y"]), np.array([3.0], np.float32))
    assert (response.model_spec.version.value, response.model_spec.signature_name) == (123, "serving_default")
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert dict(signatures.signature_def) == {
        "serving_default": signature(EXPECTED_SIGNATURE.format(input="tflite_input"))
    }

    status, _, body = RestApi(manager).handle(
        "POST", "/v1/models/default:predict", b'{"instances": [1.0, 2.0, 5.0]}'
    )
    assert (status, json.loads(body)) == (200, {"predictions": [2.5, 3.0, 4.5]})


def test_the_server_serves_model_tflite_with_prefer_tflite_model(tfserving_testdata: Path) -> None:
    """--prefer_tflite_model through ModelServer: TF Serving's testPredictOnTfLite request."""
    from serving.model_server.config import ServerOptions
    from serving.model_server.server import ModelServer

    options = ServerOptions(
        port=0,
        bind_address="127.0.0.1",
        model_name="default",
        model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_tflite"),
        prefer_tflite_model=True,
        file_system_poll_wait_seconds=0,
    )
    with ModelServer(options) as server:
        servable = server.manager.get_servable("default")
        assert type(servable).__name__ == "TfLiteServable"
        outputs = server.manager.runner.run(servable, "", {"x": np.array([[2.0]], np.float32)})
        assert outputs["y"].tolist() == [[3.0]]

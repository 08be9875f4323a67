"""Export a Keras CTR model as a versioned TF Serving SavedModel with raw-feature signatures.

Layout of one version (``<base>/<name>/<version>/``): ``saved_model.pb``, ``variables/`` and
``assets.extra/`` holding ``feature_contract.json``, ``model_card.json`` and
``tf_serving_warmup_requests``. Signatures:

* ``serving_default`` (Predict): the contract's raw features, each ``[None]`` in its wire
  dtype, named as in the contract -> ``ctr`` ``[None]`` float32 and ``logit`` ``[None]`` float32.
* ``classification`` (Classify): ``inputs`` = serialized ``tf.Example`` ``[None]`` ->
  ``classes`` ``[None, 2]`` (``"0"``, ``"1"``) and ``scores`` ``[None, 2]`` (1 - ctr, ctr).
* ``regression`` (Regress): ``inputs`` = serialized ``tf.Example`` -> ``outputs`` = ctr ``[None]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from export.batches import frame_inputs
from export.errors import ContractMismatchError, ExportError
from export.layout import Staged, staged_version
from export.model_card import MODEL_CARD_FILENAME, build_model_card, card_json
from export.signatures import (
    CLASSIFY_CLASSES,
    CLASSIFY_SCORES,
    CLASSIFY_SIGNATURE,
    EXAMPLES_INPUT,
    METHOD_NAMES,
    REGRESS_OUTPUTS,
    REGRESS_SIGNATURE,
    SERVING_DEFAULT,
    example_feature_spec,
    set_method_names,
)
from export.warmup import WARMUP_FILENAME, build_warmup_logs, write_warmup
from training.features import CONTRACT_FILENAME, FeatureContract

ASSETS_EXTRA = "assets.extra"
LOGIT_CLIP = 1e-7  # probabilities are clipped to [eps, 1 - eps] before log(p / (1 - p))
StageHook = Callable[[str, Path], None]


def check_model_contract(model: Any, contract: FeatureContract) -> None:
    """The Keras model must take exactly the contract's features, rank 1, in their wire dtypes.

    Raises:
        ContractMismatchError: listing every missing, unexpected or mistyped input.
    """
    structure = model.input
    if not isinstance(structure, Mapping):
        names = [t.name for t in model.inputs]
        structure = dict(zip(names, model.inputs, strict=True))
    problems = []
    missing = [n for n in contract.names if n not in structure]
    extra = sorted(set(structure) - set(contract.names))
    if missing:
        problems.append(f"contract features missing from the model: {missing}")
    if extra:
        problems.append(f"model inputs not in the contract: {extra}")
    for feature in contract.features:
        tensor = structure.get(feature.name)
        if tensor is None:
            continue
        dtype = str(getattr(tensor.dtype, "name", tensor.dtype))
        if dtype != feature.dtype:
            problems.append(f"input {feature.name!r} is {dtype}, the contract says {feature.dtype}")
        if len(tensor.shape) != 1:
            problems.append(f"input {feature.name!r} has shape {tuple(tensor.shape)}, expected (None,)")
    if problems:
        raise ContractMismatchError(
            f"model {getattr(model, 'name', '?')!r} does not match the contract: " + "; ".join(problems)
        )


def _two_headed(model: Any) -> tuple[Any, bool]:
    """A model returning ``{"ctr", "logit"}`` when the zoo can expose the logit, else the model itself."""
    try:
        from training.models import with_logit

        return with_logit(model), True
    except (ImportError, ValueError):
        return model, False


def find_resources(root: Any) -> list[Any]:
    """Every ``TrackableResource`` (lookup table) reachable from ``root`` in the SavedModel view.

    Keras layers expose their attributes to SavedModel as plain dicts and lists, so the walk
    descends into those as well as into trackable children.
    """
    from tensorflow.saved_model.experimental import TrackableResource

    found: list[Any] = []
    seen: dict[int, Any] = {}  # keeps visited objects alive: Keras builds the dicts/lists afresh
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        if isinstance(obj, TrackableResource):
            found.append(obj)
        elif isinstance(obj, Mapping):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif hasattr(obj, "_trackable_children"):
            try:
                stack.extend(obj._trackable_children("savedmodel").values())
            except (TypeError, ValueError):  # some trackables cannot list SavedModel children
                continue
    return found


def build_serving_module(model: Any, contract: FeatureContract) -> Any:
    """A ``tf.Module`` with the three serving functions, tracking only what they use.

    The module tracks the model's lookup tables here and, once the functions are traced, the
    ``tf.Variable`` objects they capture (``write_saved_model``). Neither the Keras ``Model`` (a
    compiled one tracks its optimizer, whose slots would double or triple the export) nor the
    layers (their Keras variable wrappers would be saved a second time) are tracked.
    """
    import tensorflow as tf

    check_model_contract(model, contract)
    scorer, has_logit = _two_headed(model)
    feature_spec = example_feature_spec(contract)
    names = list(contract.names)

    class ServingModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="recsys_serving")
            self.tables = find_resources(scorer)

        def _score(self, features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            out = scorer({n: features[n] for n in names}, training=False)
            if has_logit:
                ctr = tf.reshape(tf.cast(out["ctr"], tf.float32), [-1])
                logit = tf.reshape(tf.cast(out["logit"], tf.float32), [-1])
            else:
                ctr = tf.reshape(tf.cast(out, tf.float32), [-1])
                clipped = tf.clip_by_value(ctr, LOGIT_CLIP, 1.0 - LOGIT_CLIP)
                logit = tf.math.log(clipped) - tf.math.log1p(-clipped)
            return {"ctr": ctr, "logit": logit}

        @tf.function(
            input_signature=[
                {
                    f.name: tf.TensorSpec([None], tf.dtypes.as_dtype(f.dtype), name=f.name)
                    for f in contract.features
                }
            ]
        )
        def serve(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            # A loaded signature does not check shapes: a [N, 1] column would broadcast
            # against [N] ones into [N, N]. EnsureShape fails fast in the graph, in TF Serving too.
            checked = {n: tf.ensure_shape(inputs[n], [None], name=f"check_rank1_{n}") for n in names}
            batch = tf.shape(checked[names[0]])[0]
            asserts = [
                tf.debugging.assert_equal(
                    tf.shape(checked[n])[0],
                    batch,
                    message=f"feature {n!r} and {names[0]!r} differ in batch size",
                )
                for n in names[1:]
            ]
            with tf.control_dependencies(asserts):
                checked = {n: tf.identity(t) for n, t in checked.items()}
            return self._score(checked)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            ctr = self._score(tf.io.parse_example(inputs, feature_spec))["ctr"]
            scores = tf.stack([1.0 - ctr, ctr], axis=1)
            classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(ctr)[0], 1])
            return {CLASSIFY_CLASSES: classes, CLASSIFY_SCORES: scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            return {REGRESS_OUTPUTS: self._score(tf.io.parse_example(inputs, feature_spec))["ctr"]}

    return ServingModule()


def write_saved_model(
    model: Any,
    contract: FeatureContract,
    export_dir: Path,
    *,
    model_name: str,
    version: int,
    warmup_inputs: Mapping[str, Any] | None = None,
    model_card: Mapping[str, Any] | None = None,
    on_stage: StageHook | None = None,
) -> Path:
    """Write one complete SavedModel into ``export_dir`` (which must be empty): no publication.

    ``on_stage(stage, export_dir)`` is called after ``saved_model`` and ``assets`` are written;
    tests use it to kill the process mid-export.
    """
    import tensorflow as tf

    export_dir = Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()):
        raise ExportError(f"{export_dir} is not empty; a SavedModel is only written into an empty directory")
    module = build_serving_module(model, contract)
    signatures = {
        SERVING_DEFAULT: module.serve.get_concrete_function(),
        CLASSIFY_SIGNATURE: module.classify.get_concrete_function(),
        REGRESS_SIGNATURE: module.regress.get_concrete_function(),
    }
    # Track exactly the tf.Variables the functions capture. Tracking the layers instead saves
    # Keras wrapper objects that TF Serving's C++ loader (SavedModelBundle: saver restore, then
    # run the function) cannot connect to the captured handles: "Could not find variable".
    captured: dict[int, Any] = {}
    for function in signatures.values():
        for variable in function.variables:
            captured.setdefault(id(variable), variable)
    module.captured_variables = list(captured.values())
    try:
        tf.saved_model.save(module, str(export_dir), signatures=signatures)
    except (AssertionError, ValueError, TypeError, tf.errors.OpError) as exc:
        raise ExportError(f"tf.saved_model.save failed for {export_dir}: {exc}") from exc
    set_method_names(export_dir, METHOD_NAMES)
    if on_stage is not None:
        on_stage("saved_model", export_dir)

    extra = export_dir / ASSETS_EXTRA
    extra.mkdir(exist_ok=True)
    # Plain writes: the staging directory's rename already makes them atomic, and they keep the
    # umask's mode (mkstemp-based writes are 0600, unreadable by a server running as another user).
    (extra / CONTRACT_FILENAME).write_text(contract.to_json() + "\n", encoding="utf-8")
    card = build_model_card(contract, model_name=model_name, version=version, extra=model_card)
    (extra / MODEL_CARD_FILENAME).write_text(card_json(card), encoding="utf-8")
    if warmup_inputs is not None:
        write_warmup(extra / WARMUP_FILENAME, build_warmup_logs(warmup_inputs, model_name))
    if on_stage is not None:
        on_stage("assets", export_dir)
    return export_dir


def export_saved_model(
    model: Any,
    contract: FeatureContract,
    base_path: str | Path,
    model_name: str,
    version: int | str | None = None,
    *,
    warmup_frame: Any = None,
    model_card: Mapping[str, Any] | None = None,
    on_stage: StageHook | None = None,
) -> Path:
    """Export ``model`` as ``<base_path>/<model_name>/<version>`` atomically; returns that path.

    Args:
        model: a Keras model taking the contract's raw features (``training.models.build_model``).
        contract: the feature contract the model was trained with.
        base_path: TF Serving's ``--model_base_path`` parent (``<base>/<name>`` is the base path).
        model_name: the served model's name (``--model_name``).
        version: a positive integer; ``None`` means one more than the latest version.
        warmup_frame: a DataFrame of real rows for the warmup records (none written if None).
        model_card: caller-known facts for ``model_card.json`` (data, metrics, ...).
        on_stage: test hook, see ``write_saved_model``.

    Raises:
        ExportError: unwritable base path, existing version, bad version, contract mismatch, or
            a failed save; nothing is left under a version name in any case.
    """
    with staged_saved_model(
        model,
        contract,
        base_path,
        model_name,
        version,
        warmup_frame=warmup_frame,
        model_card=model_card,
        on_stage=on_stage,
    ) as staged:
        return staged.publish()


@contextmanager
def staged_saved_model(
    model: Any,
    contract: FeatureContract,
    base_path: str | Path,
    model_name: str,
    version: int | str | None,
    *,
    warmup_frame: Any = None,
    model_card: Mapping[str, Any] | None = None,
    on_stage: StageHook | None = None,
) -> Iterator[Staged]:
    """Reserve a version and write the complete SavedModel into its staging directory.

    The caller decides whether to ``staged.publish()`` (``export_saved_model`` always does, the
    blessing gate only after verification); leaving the block unpublished removes the staging dir.
    The contract and the warmup frame are checked before any directory is created.
    """
    check_model_contract(model, contract)
    warmup_inputs = (
        None if warmup_frame is None else frame_inputs(warmup_frame, contract, source="warmup frame")
    )
    with staged_version(Path(base_path), model_name, version) as staged:
        write_saved_model(
            model,
            contract,
            staged.path,
            model_name=model_name,
            version=staged.version,
            warmup_inputs=warmup_inputs,
            model_card=model_card,
            on_stage=on_stage,
        )
        yield staged


def read_assets(version_dir: Path) -> tuple[FeatureContract, dict[str, Any]]:
    """The contract and the model card stored in an export's ``assets.extra``."""
    extra = Path(version_dir) / ASSETS_EXTRA
    contract = FeatureContract.load(extra / CONTRACT_FILENAME)
    card_path = extra / MODEL_CARD_FILENAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read model card {card_path}: {exc}") from exc
    return contract, card

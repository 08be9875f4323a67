"""The CTR model zoo: LR, FM, Wide&Deep, DeepFM, DCNv2 and DIN over in-graph preprocessing."""

from __future__ import annotations

from collections.abc import Callable

import keras

from training.features import FeatureContract
from training.layers import CrossNetwork, FeaturePreprocessor, FMInteraction, SumLogits
from training.models.blocks import CoreBuilder, concat
from training.models.config import ModelConfig
from training.models.din import din

PREPROCESS_LAYER = "preprocess"
CORE_MODEL = "core"
LOGIT_LAYER = "logit"
OUTPUT_LAYER = "ctr"


def _lr(b: CoreBuilder) -> list[keras.KerasTensor]:
    return [b.linear_logit()]


def _fm(b: CoreBuilder) -> list[keras.KerasTensor]:
    fields = b.field_stack(b.shared_dim("fm"))
    return [b.linear_logit(), FMInteraction(name="fm")(fields)]


def _wide_deep(b: CoreBuilder) -> list[keras.KerasTensor]:
    wide = b.linear_logit()
    deep = b.dense_logit(b.tower(b.deep_input()), name="deep_logit")
    return [wide, deep]


def _deepfm(b: CoreBuilder) -> list[keras.KerasTensor]:
    linear = b.linear_logit()
    fields = b.field_stack(b.shared_dim("deepfm"))
    interaction = FMInteraction(name="fm")(fields)
    flat = keras.layers.Flatten(name="fields_flat")(fields)
    deep = b.dense_logit(b.tower(flat), name="deep_logit")
    return [linear, interaction, deep]


def _dcnv2(b: CoreBuilder) -> list[keras.KerasTensor]:
    x0 = b.deep_input()
    cross = CrossNetwork(
        b.config.num_cross_layers,
        projection_dim=b.config.low_rank,
        l2=b.config.l2,
        seed=b.next_seed(),
        name="cross",
    )
    if b.config.dcn_structure == "stacked":
        top = b.tower(cross(x0))
    else:
        top = concat([cross(x0), b.tower(x0)], name="cross_deep") if b.config.hidden_units else cross(x0)
    return [b.dense_logit(top, name="dcn_logit")]


_BUILDERS: dict[str, Callable[[CoreBuilder], list[keras.KerasTensor]]] = {
    "lr": _lr,
    "fm": _fm,
    "wide_deep": _wide_deep,
    "deepfm": _deepfm,
    "dcnv2": _dcnv2,
}
# Models that work on any contract; SEQUENCE_MODEL_NAMES need a ``sequence`` feature.
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
SEQUENCE_MODEL_NAMES: tuple[str, ...] = ("din",)
_BUILDERS["din"] = din


def build_core(
    name: str, contract: FeatureContract, *, config: ModelConfig | None = None, seed: int = 0
) -> keras.Model:
    """The numeric-only half: preprocessed tensors keyed by feature name -> probability ``[batch]``.

    Its last two layers are named ``logit`` and ``ctr`` so exporters can expose both.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODEL_NAMES + SEQUENCE_MODEL_NAMES)}")
    builder = CoreBuilder(contract, config or ModelConfig(), seed)
    logit = SumLogits(name=LOGIT_LAYER)(_BUILDERS[name](builder))
    probability = keras.layers.Activation("sigmoid", dtype="float32", name=OUTPUT_LAYER)(logit)
    return keras.Model(builder.inputs, probability, name=CORE_MODEL)


def build_model(
    name: str, contract: FeatureContract, *, config: ModelConfig | None = None, seed: int = 0
) -> keras.Model:
    """Raw features (named and typed as the contract) -> ``preprocess`` -> ``core`` -> click probability.

    Args:
        name: One of ``MODEL_NAMES`` (``lr | fm | wide_deep | deepfm | dcnv2``) or, for a
            contract with a ``sequence`` feature, ``SEQUENCE_MODEL_NAMES`` (``din``).
        contract: The feature contract; it is embedded in the ``preprocess`` layer's config.
        config: Architecture knobs; defaults to ``ModelConfig()``.
        seed: Seeds every initialiser and dropout, so equal seeds give identical weights.

    Returns:
        An uncompiled functional model taking a dict of rank-1 tensors and returning ``[batch]`` float32.
    """
    if not isinstance(contract, FeatureContract):
        raise TypeError(f"contract must be a FeatureContract, got {type(contract).__name__}")
    core = build_core(name, contract, config=config, seed=seed)
    raw = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in contract.features}
    preprocessed = FeaturePreprocessor(contract.to_dict(), name=PREPROCESS_LAYER)(raw)
    return keras.Model(raw, core(preprocessed), name=name)


def split_model(model: keras.Model) -> tuple[FeaturePreprocessor, keras.Model]:
    """The model's ``preprocess`` layer and ``core`` sub-model (what ONNX exports)."""
    try:
        preprocess = model.get_layer(PREPROCESS_LAYER)
        core = model.get_layer(CORE_MODEL)
    except ValueError as exc:
        raise ValueError(f"model {model.name!r} was not built by build_model: {exc}") from exc
    if not isinstance(preprocess, FeaturePreprocessor) or not isinstance(core, keras.Model):
        raise ValueError(
            f"model {model.name!r}: expected a FeaturePreprocessor '{PREPROCESS_LAYER}' and a sub-model "
            f"'{CORE_MODEL}', got {type(preprocess).__name__} and {type(core).__name__}"
        )
    return preprocess, core


def with_logit(model: keras.Model) -> keras.Model:
    """The same layers (shared weights) returning ``{"ctr": [batch], "logit": [batch]}``."""
    preprocess, core = split_model(model)
    two_headed = keras.Model(
        core.input,
        {OUTPUT_LAYER: core.get_layer(OUTPUT_LAYER).output, LOGIT_LAYER: core.get_layer(LOGIT_LAYER).output},
        name=f"{CORE_MODEL}_with_logit",
    )
    raw = {
        name: keras.Input(shape=(), dtype=dtype, name=name)
        for name, dtype in preprocess.contract.signature_spec().items()
    }
    return keras.Model(raw, two_headed(preprocess(raw)), name=f"{model.name}_with_logit")

"""DIN (Deep Interest Network, Zhou et al. 2018): target attention of the candidate over the history.

The candidate item and the history are embedded with one table (the sequence's ``item_feature``),
each history vector is weighted by an activation unit ``MLP([h, c, h - c, h * c]) -> 1`` and the
weighted sum joins the other features' embeddings in the deep tower.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from training.features import FeatureKind
from training.models.blocks import CoreBuilder, concat

_PACKAGE = "recsys"
# The paper keeps the activation unit's raw outputs as weights (no softmax) "to reserve the
# intensity of user interests"; "softmax" is the masked, normalised variant.
WEIGHTINGS = ("none", "softmax")
ATTENTION_UNITS = (36,)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TargetAttention(keras.layers.Layer):
    """DIN's activation unit and weighted pooling of the history.

    Input: ``[candidate, history, ids]``: ``[batch, dim]``, ``[batch, max_len, dim]`` and the
    history ids ``[batch, max_len]`` (-1 = padding, which gets weight 0).
    Output: ``[batch, dim]`` = ``sum_j w_j * h_j`` with ``w_j = MLP([h_j, c, h_j - c, h_j * c])``
    (``weighting="none"``, the paper's), or the masked softmax of those scores (``"softmax"``;
    a history with no item then pools to zeros).
    """

    def __init__(
        self,
        hidden_units: tuple[int, ...] = ATTENTION_UNITS,
        activation: str = "sigmoid",
        weighting: str = "none",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if any(int(u) < 1 for u in hidden_units):
            raise ValueError(f"hidden_units must all be >= 1, got {list(hidden_units)}")
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.weighting = weighting
        self.seed = int(seed)
        self.supports_masking = True  # the history's Keras mask is redundant with ``ids`` (used instead)
        self.dense_layers = [
            keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed + i),
                name=f"att_dense_{i}",
            )
            for i, units in enumerate(self.hidden_units)
        ]
        self.score = keras.layers.Dense(
            1, kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed + len(self.hidden_units))
        )

    def build(self, input_shape: Any) -> None:
        candidate, history, ids = (tuple(s) for s in input_shape)
        if len(candidate) != 2 or len(history) != 3 or len(ids) != 2 or candidate[-1] != history[-1]:
            raise ValueError(
                f"{self.name}: expected [batch, dim], [batch, max_len, dim], [batch, max_len]; got {input_shape}"
            )
        width = 4 * int(history[-1])
        for layer in self.dense_layers:
            layer.build((None, None, width))
            width = layer.units
        self.score.build((None, None, width))

    def call(self, inputs: Any, mask: Any = None) -> Any:
        candidate, history, ids = inputs
        c = ops.broadcast_to(ops.expand_dims(candidate, 1), ops.shape(history))
        x = ops.concatenate([history, c, history - c, history * c], axis=-1)
        for layer in self.dense_layers:
            x = layer(x)
        scores = ops.squeeze(self.score(x), -1)
        present = ops.greater_equal(ids, 0)
        if self.weighting == "softmax":
            scores = ops.where(present, scores, ops.full_like(scores, -1e9))
            weights = ops.softmax(scores, axis=-1)
        else:
            weights = scores
        weights = ops.where(present, weights, ops.zeros_like(weights))
        return ops.sum(history * ops.expand_dims(weights, -1), axis=1)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        return (input_shape[0][0], input_shape[0][1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "activation": self.activation,
            "weighting": self.weighting,
            "seed": self.seed,
        }


def din(b: CoreBuilder) -> list[keras.KerasTensor]:
    """DIN's logit: [other embeddings, attention-pooled history per sequence, numerics] -> tower."""
    sequences = b.contract.sequences
    if not sequences:
        raise ValueError("din needs a 'sequence' feature in the contract (e.g. data option history_len)")
    shared = {s.item_feature for s in sequences}
    tables: dict[str, Any] = {}
    parts: dict[str, keras.KerasTensor] = {}
    for feature in b.categorical:
        if feature.kind is FeatureKind.SEQUENCE:
            continue
        if feature.name in shared:
            tables[feature.name] = b.embedding_layer(feature, b.embedding_dim(feature), "emb")
            parts[feature.name] = tables[feature.name](b.inputs[feature.name])
        else:
            parts[feature.name] = b.field_vector(feature, b.embedding_dim(feature), "emb")
    pooled = []
    for sequence in sequences:
        assert sequence.item_feature is not None
        history = tables[sequence.item_feature](b.inputs[sequence.name])
        attention = TargetAttention(seed=b.next_seed(), name=f"attention_{sequence.name}")
        pooled.append(attention([parts[sequence.item_feature], history, b.inputs[sequence.name]]))
    dense = b.numerics()
    x = concat([*parts.values(), *pooled, *([dense] if dense is not None else [])], name="din_input")
    return [b.dense_logit(b.tower(x), name="din_logit")]

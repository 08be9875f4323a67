"""Building blocks shared by the zoo: core inputs, embeddings, linear term, field stacks, deep tower."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from training.features import Feature, FeatureContract, FeatureKind
from training.layers import CategoryEmbedding, LinearTerm, MaskedMeanPooling, NumericEmbedding
from training.models.config import ModelConfig


def core_inputs(contract: FeatureContract) -> dict[str, keras.KerasTensor]:
    """The preprocessed tensors, keyed and named by feature, as ``FeaturePreprocessor`` emits them."""
    inputs = {}
    for feature in contract.features:
        if feature.kind is FeatureKind.NUMERIC:
            inputs[feature.name] = keras.Input(shape=(), dtype="float32", name=feature.name)
        elif feature.is_multi_valued:
            inputs[feature.name] = keras.Input(shape=(feature.max_len,), dtype="int32", name=feature.name)
        else:
            inputs[feature.name] = keras.Input(shape=(), dtype="int32", name=feature.name)
    return inputs


class CoreBuilder:
    """Creates the core's layers with initialisers seeded from one generator, in a fixed order.

    Two builders made with the same seed, contract and config produce identical weights, which is
    what exact training resume and reproducible experiments rely on.
    """

    def __init__(self, contract: FeatureContract, config: ModelConfig, seed: int) -> None:
        self.contract = contract
        self.config = config
        self._rng = np.random.default_rng(seed)
        self.inputs = core_inputs(contract)
        self.categorical = [f for f in contract.features if f.is_categorical]
        self.numeric = [f for f in contract.features if not f.is_categorical]
        self._numerics: keras.KerasTensor | None = None

    def next_seed(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))

    def regularizer(self) -> keras.regularizers.Regularizer | None:
        return keras.regularizers.L2(self.config.l2) if self.config.l2 > 0 else None

    def embedding_init(self) -> keras.initializers.Initializer:
        scale = self.config.embeddings_scale
        return keras.initializers.RandomUniform(-scale, scale, seed=self.next_seed())

    def embedding_dim(self, feature: Feature) -> int:
        return self.config.embedding_dim or feature.embedding_dim

    def shared_dim(self, model_name: str) -> int:
        """The one embedding dimension FM-family models need across every field."""
        if self.config.embedding_dim is not None:
            return self.config.embedding_dim
        fields = self.categorical or self.numeric
        dims = sorted({f.embedding_dim for f in fields})
        if len(dims) != 1:
            raise ValueError(
                f"{model_name} needs one embedding dim for every field, but the contract has "
                f"{ {f.name: f.embedding_dim for f in fields} }; set ModelConfig.embedding_dim"
            )
        return dims[0]

    def embedding_layer(self, feature: Feature, dim: int, prefix: str) -> CategoryEmbedding:
        """The seeded ``[num_buckets, dim]`` table of one categorical feature, named ``prefix_name``."""
        return CategoryEmbedding(
            feature.num_buckets,
            dim,
            embeddings_initializer=self.embedding_init(),
            embeddings_regularizer=self.regularizer(),
            name=f"{prefix}_{feature.name}",
        )

    def field_vector(self, feature: Feature, dim: int, prefix: str) -> keras.KerasTensor:
        """``[batch, dim]`` embedding of one categorical feature (mean-pooled if multi-valued)."""
        vectors = self.embedding_layer(feature, dim, prefix)(self.inputs[feature.name])
        if feature.is_multi_valued:
            vectors = MaskedMeanPooling(name=f"{prefix}_pool_{feature.name}")(vectors)
        return vectors

    def numerics(self) -> keras.KerasTensor | None:
        """``[batch, num_numeric]`` of the normalised numeric features, or None if there are none."""
        if not self.numeric:
            return None
        if self._numerics is None:
            columns = [
                keras.layers.Reshape((1,), name=f"col_{f.name}")(self.inputs[f.name]) for f in self.numeric
            ]
            self._numerics = concat(columns, name="numerics")
        return self._numerics

    def linear_logit(self) -> keras.KerasTensor:
        """The first-order term: a learned scalar per category (pooled) plus a weight per numeric."""
        parts: dict[str, keras.KerasTensor] = {}
        if self.categorical:
            weights = [self.field_vector(f, 1, "linear") for f in self.categorical]
            parts["sparse"] = concat(weights, name="linear_sparse")
        dense = self.numerics()
        if dense is not None:
            parts["dense"] = dense
        return LinearTerm(kernel_regularizer=self.regularizer(), name="linear")(parts)

    def field_stack(self, dim: int) -> keras.KerasTensor:
        """``[batch, num_fields, dim]``: every categorical embedding and every scaled numeric vector."""
        fields = [
            keras.layers.Reshape((1, dim), name=f"field_{f.name}")(self.field_vector(f, dim, "emb"))
            for f in self.categorical
        ]
        dense = self.numerics()
        if dense is not None:
            fields.append(
                NumericEmbedding(
                    len(self.numeric),
                    dim,
                    embeddings_initializer=self.embedding_init(),
                    embeddings_regularizer=self.regularizer(),
                    name="emb_numeric",
                )(dense)
            )
        return concat(fields, axis=1, name="fields")

    def deep_input(self) -> keras.KerasTensor:
        """``[batch, sum(dims) + num_numeric]``: per-feature embeddings next to the raw numerics."""
        parts = [self.field_vector(f, self.embedding_dim(f), "emb") for f in self.categorical]
        dense = self.numerics()
        if dense is not None:
            parts.append(dense)
        return concat(parts, name="deep_input")

    def tower(self, x: keras.KerasTensor, prefix: str = "deep") -> keras.KerasTensor:
        """The deep tower: Dense + activation (+ seeded dropout) per hidden width."""
        for i, units in enumerate(self.config.hidden_units):
            x = keras.layers.Dense(
                units,
                activation=self.config.activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.next_seed()),
                kernel_regularizer=self.regularizer(),
                name=f"{prefix}_dense_{i}",
            )(x)
            if self.config.dropout > 0:
                x = keras.layers.Dropout(
                    self.config.dropout, seed=self.next_seed(), name=f"{prefix}_dropout_{i}"
                )(x)
        return x

    def dense_logit(self, x: keras.KerasTensor, name: str) -> keras.KerasTensor:
        return keras.layers.Dense(
            1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.next_seed()),
            kernel_regularizer=self.regularizer(),
            name=name,
        )(x)


def concat(tensors: list[Any], *, name: str, axis: int = -1) -> Any:
    """Concatenate, passing a single tensor through (Keras' Concatenate wants two or more)."""
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=axis, name=name)(tensors)

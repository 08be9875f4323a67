"""Keras layers of the CTR model zoo: in-graph preprocessing, embeddings and feature interactions."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import import_module
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from training.features import MULTI_VALUE_SEPARATOR, Feature, FeatureContract, FeatureKind

_PACKAGE = "recsys"


def load_keras_model(path: str | os.PathLike[str], **kwargs: Any) -> keras.Model:
    """``keras.saving.load_model`` for our models.

    Our saved models name the custom layers below, which Keras finds only once this module has
    registered them; calling this function guarantees that. (A fresh process that loaded a
    model without it failed with "Could not locate class 'FeaturePreprocessor'".) DIN's
    ``TargetAttention`` lives in ``training.models.din``, imported here for the same reason.
    """
    import_module("training.models.din")
    return keras.saving.load_model(path, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeaturePreprocessor(keras.layers.Layer):
    """Raw wire features -> int32 ids and normalised float32 numerics, exactly as the contract says.

    Semantics (``docs/ARCHITECTURE.md``; mirrored on the host by
    ``training.models.host_preprocess.preprocess_numpy`` for the ONNX path):

    * vocabulary: the value at index ``i`` -> id ``i + num_oov``; an unseen value ->
      ``fingerprint64(value) % num_oov``. Integers are looked up and hashed via their decimal string.
    * hash buckets: ``tf.strings.to_hash_bucket_fast(value, hash_buckets)`` (Fingerprint64 mod n).
    * numeric: ``(t(x) - mean) / std`` in float32, non-finite results -> 0; ``t`` is the identity,
      or for ``transform="log1p"`` ``sign(x) * log1p(|x|)`` computed in float64 and rounded to
      float32 (TensorFlow's float32 log1p is up to 4 ulp off numpy's; via float64 both round the
      same, so the host replica stays bit-identical).
    * multi-valued (``multi_categorical`` and ``sequence``): split on ``|``, empty tokens dropped,
      the first ``max_len`` kept (a sequence is sent most recent first), each mapped as above,
      padded with -1.

    The lookup tables are built from the contract in ``__init__`` so they carry no weights: the
    contract JSON in ``get_config`` is all a ``.keras`` file needs, and the tables are tracked
    resources that ``tf.saved_model.save`` exports.

    Input: dict feature name -> rank-1 tensor ``[batch]`` of the wire dtype (string, int64, float32).
    Output: dict feature name -> int32 ``[batch]`` (categorical), int32 ``[batch, max_len]``
    (multi-valued, -1 = padding) or float32 ``[batch]`` (numeric), in contract order.
    """

    def __init__(self, contract: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(contract, Mapping):
            raise TypeError(f"contract must be the contract's JSON dict, got {type(contract).__name__}")
        self._contract_dict = dict(contract)
        self._contract = FeatureContract.from_dict(self._contract_dict)
        too_big = [f.name for f in self._contract.features if f.is_categorical and f.num_buckets >= 2**31]
        if too_big:
            raise ValueError(f"features {too_big} have >= 2**31 buckets; ids are int32")
        self._tables = {
            f.name: _vocabulary_table(f) for f in self._contract.features if f.vocabulary is not None
        }

    @property
    def contract(self) -> FeatureContract:
        return self._contract

    def call(self, inputs: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"{self.name}: inputs must be a dict feature name -> tensor, got {type(inputs).__name__}"
            )
        missing = [n for n in self._contract.names if n not in inputs]
        if missing:
            raise ValueError(f"{self.name}: missing input features {missing}")
        outputs = {}
        for feature in self._contract.features:
            value = inputs[feature.name]
            if feature.kind is FeatureKind.NUMERIC:
                outputs[feature.name] = _normalise(feature, value)
            elif feature.is_multi_valued:
                outputs[feature.name] = self._multi_ids(feature, value)
            else:
                if feature.kind is FeatureKind.CATEGORICAL_INT:
                    value = tf.strings.as_string(tf.cast(value, tf.int64))
                outputs[feature.name] = self._ids(feature, value)
        return outputs

    def _ids(self, feature: Feature, strings: tf.Tensor) -> tf.Tensor:
        if feature.hash_buckets is not None:
            return tf.cast(tf.strings.to_hash_bucket_fast(strings, feature.hash_buckets), tf.int32)
        known = self._tables[feature.name].lookup(strings)
        oov = tf.cast(tf.strings.to_hash_bucket_fast(strings, feature.num_oov), tf.int32)
        return tf.where(known >= 0, known, oov)

    def _multi_ids(self, feature: Feature, strings: tf.Tensor) -> tf.Tensor:
        tokens = tf.strings.split(strings, MULTI_VALUE_SEPARATOR)
        tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
        tokens = tokens[:, : feature.max_len]
        ids = tokens.with_flat_values(self._ids(feature, tokens.flat_values))
        return ids.to_tensor(default_value=-1, shape=[None, feature.max_len])

    def compute_output_spec(self, inputs: Mapping[str, Any]) -> dict[str, keras.KerasTensor]:
        out = {}
        for feature in self._contract.features:
            batch = inputs[feature.name].shape[0] if feature.name in inputs else None
            if feature.kind is FeatureKind.NUMERIC:
                out[feature.name] = keras.KerasTensor((batch,), dtype="float32")
            elif feature.is_multi_valued:
                out[feature.name] = keras.KerasTensor((batch, feature.max_len), dtype="int32")
            else:
                out[feature.name] = keras.KerasTensor((batch,), dtype="int32")
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "contract": self._contract_dict}


def _vocabulary_table(feature: Feature) -> tf.lookup.StaticHashTable:
    """String key (ints as decimal strings) -> ``index + num_oov``; -1 when absent."""
    assert feature.vocabulary is not None
    keys = [str(v) for v in feature.vocabulary]
    values = list(range(feature.num_oov, feature.num_oov + len(keys)))
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, dtype=tf.string), tf.constant(values, dtype=tf.int32)
    )
    return tf.lookup.StaticHashTable(initializer, default_value=-1, name=f"vocab_{feature.name}")


def _normalise(feature: Feature, value: tf.Tensor) -> tf.Tensor:
    x = tf.cast(value, tf.float32)
    if feature.transform == "log1p":
        wide = tf.cast(x, tf.float64)
        x = tf.cast(tf.math.sign(wide) * tf.math.log1p(tf.math.abs(wide)), tf.float32)
    y = (x - tf.constant(feature.mean, tf.float32)) / tf.constant(feature.std, tf.float32)
    return tf.where(tf.math.is_finite(y), y, tf.zeros_like(y))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CategoryEmbedding(keras.layers.Layer):
    """Embedding lookup that treats negative ids as padding.

    Input: int ids ``[batch]`` or ``[batch, max_len]`` with -1 marking padding.
    Output: ``[batch, output_dim]``, or ``[batch, max_len, output_dim]`` with zero rows at padding
    and a Keras mask ``[batch, max_len]`` (True where an id is present) for ``MaskedMeanPooling``.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(input_dim) < 1 or int(output_dim) < 1:
            raise ValueError(f"input_dim and output_dim must be >= 1, got {input_dim}, {output_dim}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.supports_masking = True

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) not in (1, 2):
            raise ValueError(f"{self.name}: ids must be [batch] or [batch, max_len], got {input_shape}")
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
        )

    def call(self, ids: Any) -> Any:
        ids = ops.cast(ids, "int32")
        vectors = ops.take(self.embeddings, ops.maximum(ids, 0), axis=0)
        if len(ids.shape) == 2:
            vectors = vectors * ops.expand_dims(ops.cast(ids >= 0, vectors.dtype), -1)
        return vectors

    def compute_mask(self, ids: Any, mask: Any = None) -> Any:
        return ops.greater_equal(ids, 0) if len(ids.shape) == 2 else None

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over the present positions of a padded sequence; all-padding rows give zeros.

    Input: ``[batch, length, dim]`` with a mask ``[batch, length]`` (the Keras mask from
    ``CategoryEmbedding``, or passed as ``mask=``); without a mask every position counts.
    Output: ``[batch, dim]``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        total = ops.sum(inputs * weights, axis=1)
        count = ops.sum(weights, axis=1)
        return total / ops.maximum(count, 1.0)

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expected [batch, length, dim], got {input_shape}")
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NumericEmbedding(keras.layers.Layer):
    """One learned vector per numeric feature, scaled by the feature's value (FM-style dense field).

    Input: ``[batch, num_features]`` float. Output: ``[batch, num_features, output_dim]`` with
    ``out[b, j] = x[b, j] * v[j]``.
    """

    def __init__(
        self,
        num_features: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_features) < 1 or int(output_dim) < 1:
            raise ValueError(f"num_features and output_dim must be >= 1, got {num_features}, {output_dim}")
        self.num_features = int(num_features)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 2 or input_shape[-1] != self.num_features:
            raise ValueError(f"{self.name}: expected [batch, {self.num_features}], got {input_shape}")
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_features, self.output_dim),
            initializer=self.embeddings_initializer,
            regularizer=self.embeddings_regularizer,
        )

    def call(self, inputs: Any) -> Any:
        return ops.expand_dims(inputs, -1) * ops.expand_dims(self.embeddings, 0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.num_features, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_features": self.num_features,
            "output_dim": self.output_dim,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearTerm(keras.layers.Layer):
    """First-order (logistic-regression) term: ``sum(sparse) + dense @ w + b``.

    ``sparse`` holds each categorical field's learned scalar weight (already looked up and pooled),
    ``dense`` the normalised numeric features; either key may be absent.

    Input: dict with ``"sparse"`` ``[batch, num_fields]`` and/or ``"dense"`` ``[batch, num_numeric]``.
    Output: the logit contribution ``[batch]``.
    """

    def __init__(
        self,
        use_bias: bool = True,
        kernel_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(use_bias, bool):
            raise TypeError(f"use_bias must be a bool, got {use_bias!r}")
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape: Mapping[str, tuple[int | None, ...]]) -> None:
        unknown = set(input_shape) - {"sparse", "dense"}
        if unknown or not input_shape:
            raise ValueError(
                f"{self.name}: inputs must be a dict with 'sparse' and/or 'dense', got {input_shape}"
            )
        self.kernel = None
        if "dense" in input_shape:
            self.kernel = self.add_weight(
                name="kernel",
                shape=(input_shape["dense"][-1],),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
        self.bias = self.add_weight(name="bias", shape=(), initializer="zeros") if self.use_bias else None

    def call(self, inputs: Mapping[str, Any]) -> Any:
        parts = []
        if "sparse" in inputs:
            parts.append(ops.sum(inputs["sparse"], axis=-1))
        if "dense" in inputs:
            parts.append(ops.sum(inputs["dense"] * self.kernel, axis=-1))
        logit = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        return logit + self.bias if self.bias is not None else logit

    def compute_output_shape(self, input_shape: Mapping[str, tuple[int | None, ...]]) -> tuple[int | None]:
        return (next(iter(input_shape.values()))[0],)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FMInteraction(keras.layers.Layer):
    """Factorization-machine second-order term over field embeddings.

    ``0.5 * sum_k((sum_f v_fk)^2 - sum_f v_fk^2)``, i.e. the sum of all pairwise dot products
    ``<v_i, v_j>`` for ``i < j`` in O(F*K).

    Input: ``[batch, num_fields, dim]``. Output: ``[batch]``.
    """

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expected [batch, num_fields, dim], got {input_shape}")

    def call(self, inputs: Any) -> Any:
        square_of_sum = ops.square(ops.sum(inputs, axis=1))
        sum_of_square = ops.sum(ops.square(inputs), axis=1)
        return 0.5 * ops.sum(square_of_sum - sum_of_square, axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None]:
        return (input_shape[0],)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CrossLayer(keras.layers.Layer):
    """One DCN-V2 cross layer: ``x0 * (x @ W + b) + x``.

    Full rank (``projection_dim=None``): ``W`` is ``[dim, dim]``. Low rank: ``W = U @ V`` with
    ``U`` ``[dim, projection_dim]`` and ``V`` ``[projection_dim, dim]`` (the DCN-V2 "mixture-free"
    low-rank variant), which cuts parameters from dim^2 to 2*dim*r. ``V`` has its own initialiser
    (``kernel_v_initializer``; by default ``kernel_initializer`` re-seeded, see
    ``distinct_initializer``): one seeded instance called twice returns the same numbers, which
    made ``V`` start as a copy of ``U``'s values.

    Input: ``[x0, x]`` (each ``[batch, dim]``), or a single ``x0`` meaning ``x = x0``.
    Output: ``[batch, dim]``.
    """

    def __init__(
        self,
        projection_dim: int | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        kernel_v_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if projection_dim is not None and int(projection_dim) < 1:
            raise ValueError(f"projection_dim must be None or >= 1, got {projection_dim}")
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_v_initializer = (
            distinct_initializer(self.kernel_initializer)
            if kernel_v_initializer is None
            else keras.initializers.get(kernel_v_initializer)
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape: Any) -> None:
        shape = _first_shape(input_shape)
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(f"{self.name}: expected [batch, dim] with a known dim, got {shape}")
        dim = int(shape[-1])
        add = self.add_weight
        if self.projection_dim is None:
            self.kernel = add(
                name="kernel",
                shape=(dim, dim),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
        else:
            r = self.projection_dim
            self.kernel_u = add(
                name="kernel_u",
                shape=(dim, r),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
            self.kernel_v = add(
                name="kernel_v",
                shape=(r, dim),
                initializer=self.kernel_v_initializer,
                regularizer=self.kernel_regularizer,
            )
        self.bias = (
            add(name="bias", shape=(dim,), initializer=self.bias_initializer) if self.use_bias else None
        )

    def call(self, inputs: Any) -> Any:
        x0, x = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, inputs)
        if self.projection_dim is None:
            projected = ops.matmul(x, self.kernel)
        else:
            projected = ops.matmul(ops.matmul(x, self.kernel_u), self.kernel_v)
        if self.bias is not None:
            projected = projected + self.bias
        return x0 * projected + x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return tuple(_first_shape(input_shape))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_v_initializer": keras.initializers.serialize(self.kernel_v_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CrossNetwork(keras.layers.Layer):
    """A stack of ``num_layers`` ``CrossLayer``s: ``x_{l+1} = x0 * (x_l @ W_l + b_l) + x_l``.

    Each layer's kernel (``U`` when low rank) is Glorot-uniform seeded with ``seed + l`` and its
    ``V`` with ``seed + num_layers + l``, so builds are reproducible and no two kernels start equal.

    Input: ``[batch, dim]``. Output: ``[batch, dim]``.
    """

    def __init__(
        self,
        num_layers: int,
        projection_dim: int | None = None,
        l2: float = 0.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.num_layers = int(num_layers)
        self.projection_dim = projection_dim
        self.l2 = float(l2)
        self.seed = int(seed)
        regularizer = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.cross_layers = [
            CrossLayer(
                projection_dim=projection_dim,
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed + i),
                kernel_v_initializer=keras.initializers.GlorotUniform(seed=self.seed + self.num_layers + i),
                kernel_regularizer=regularizer,
                name=f"cross_{i}",
            )
            for i in range(self.num_layers)
        ]

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        for layer in self.cross_layers:
            layer.build([input_shape, input_shape])

    def call(self, inputs: Any) -> Any:
        x = inputs
        for layer in self.cross_layers:
            x = layer([inputs, x])
        return x

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "projection_dim": self.projection_dim,
            "l2": self.l2,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SumLogits(keras.layers.Layer):
    """Sums logit contributions of shape ``[batch]`` or ``[batch, 1]`` into one ``[batch]`` logit.

    Input: a list of tensors ``[batch]`` / ``[batch, 1]``. Output: ``[batch]``, as
    ``scale * sum + shift``: two non-trainable weights, 1 and 0 (exactly the sum) until
    ``training.calibration`` fits them on validation after training, so the exported graph
    serves the calibrated probability and logit. A model saved before they existed loads with
    1 and 0.
    """

    def build(self, input_shape: Any) -> None:
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones", trainable=False)
        self.shift = self.add_weight(name="shift", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs: Any) -> Any:
        parts = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        total = None
        for part in parts:
            flat = ops.reshape(part, (-1,))
            total = flat if total is None else total + flat
        return total * ops.cast(self.scale, total.dtype) + ops.cast(self.shift, total.dtype)

    def load_own_variables(self, store: Any) -> None:
        if len(store.keys()) == 0:  # saved before the calibration weights: the identity
            return
        super().load_own_variables(store)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None]:
        return (_first_shape(input_shape)[0],)


def distinct_initializer(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    """A copy of ``initializer`` drawing other numbers: an int seed becomes an unrelated one.

    Keras initialisers are stateless, so one instance (seeded or not) returns the same values on
    every call. An unseeded copy picks its own seed; one without a seed (zeros) is returned as is.
    """
    config = keras.initializers.serialize(initializer)
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    if "seed" not in inner:
        return initializer
    seed = inner["seed"]
    if isinstance(seed, int):
        inner["seed"] = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0] % (2**31 - 1))
    return keras.initializers.deserialize(config)


def _first_shape(input_shape: Any) -> tuple[int | None, ...]:
    """The first shape of a list of shapes, or the shape itself."""
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
        return tuple(input_shape[0])
    return tuple(input_shape)

"""Serialized tf.Example protos from raw-feature batches, for the Classify and Regress signatures."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from training.features import FeatureContract


def serialize_examples(contract: FeatureContract, inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """One serialized ``tf.Example`` per row, each feature a one-value list of its wire type."""
    from tensorflow.core.example import example_pb2, feature_pb2

    rows = len(next(iter(inputs.values())))
    out = []
    for i in range(rows):
        example = example_pb2.Example()
        for feature in contract.features:
            value = inputs[feature.name][i]
            slot = example.features.feature[feature.name]
            if feature.dtype == "string":
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                slot.CopyFrom(feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[raw])))
            elif feature.dtype == "int64":
                slot.CopyFrom(feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(value)])))
            else:
                slot.CopyFrom(feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(value)])))
        out.append(example.SerializeToString())
    return out

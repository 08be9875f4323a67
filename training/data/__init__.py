"""Data sources for CTR training: synthetic (known logit), MovieLens-100K and Criteo, split by time."""

from .base import DataError, Splits
from .pipeline import load_source, make_tf_dataset

__all__ = ["DataError", "Splits", "load_source", "make_tf_dataset"]

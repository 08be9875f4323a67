"""Data sources for CTR training: synthetic (known logit), MovieLens-100K and Criteo, split by time."""

from .base import DataError, Splits
from .criteo import criteo_contract, load_criteo, read_criteo_tsv, write_criteo_tsv
from .movielens import load_movielens, movielens_contract, read_movielens
from .pipeline import load_source, make_tf_dataset
from .synthetic import load_synthetic, oracle_auc, synthetic_contract, write_synthetic
from .synthetic_world import SyntheticConfig

__all__ = [
    "DataError",
    "Splits",
    "SyntheticConfig",
    "criteo_contract",
    "load_criteo",
    "load_movielens",
    "load_source",
    "load_synthetic",
    "make_tf_dataset",
    "movielens_contract",
    "oracle_auc",
    "read_criteo_tsv",
    "read_movielens",
    "synthetic_contract",
    "write_criteo_tsv",
    "write_synthetic",
]

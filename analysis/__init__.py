"""Offline reports over the ranker's logs: online CTR per arm, and training/serving skew."""

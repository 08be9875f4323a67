"""Operator rules: YAML rules, validated and hot-reloaded, applied as rerank stages."""

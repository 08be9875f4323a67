"""The operator console: edit, preview, publish and roll back the rerank rules from a browser."""

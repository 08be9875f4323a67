"""The ranking service: FastAPI app factory, routes, settings and metrics."""

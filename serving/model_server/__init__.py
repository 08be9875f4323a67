"""Embedded model server implementing TensorFlow Serving's gRPC and REST APIs."""

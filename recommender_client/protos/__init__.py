"""TensorFlow-free, wire-compatible protobuf messages for TF Serving's gRPC API (package ``recsys.tfs``).

The ``*_pb2`` modules are generated from the ``.proto`` files here by ``generate.py`` and committed,
so runtime needs only ``protobuf`` and ``grpcio``. Field numbers are TensorFlow's and TF Serving's,
so bytes produced here parse with the official messages and vice versa; the proto package differs
(``recsys.tfs`` instead of ``tensorflow``/``tensorflow.serving``) so both sets can live in one process.
"""

"""Regenerate the *_pb2.py modules from the .proto files in this folder.

Run from the repository root (needs the dev extra, i.e. grpcio-tools)::

    .venv/bin/python -m recommender_client.protos.generate

which runs exactly::

    .venv/bin/python -m grpc_tools.protoc -I . -I <grpc_tools>/_proto \
        --python_out=. --pyi_out=. recommender_client/protos/*.proto

No *_pb2_grpc.py is generated on purpose: a service declared in package ``recsys.tfs`` would get
method paths ``/recsys.tfs.PredictionService/...``, which TF Serving does not answer. The stubs
with TF Serving's own method paths are written by hand in ``services.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parents[1]


def main() -> int:
    """Run protoc over every .proto here; the generated modules are committed."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    protos = sorted(str(p.relative_to(REPO_ROOT)) for p in PROTO_DIR.glob("*.proto"))
    args = ["grpc_tools.protoc", "-I", str(REPO_ROOT), "-I", str(well_known)]
    args += ["--python_out", str(REPO_ROOT), "--pyi_out", str(REPO_ROOT), *protos]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())

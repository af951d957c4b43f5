"""Generates sessiond's Python stubs from proto/ into src/sessiond/v1.

    python clients/python/generate.py [OUT_DIR]

Runs grpc_tools.protoc (grpcio-tools, pinned in requirements-dev.txt) on
proto/sessiond/v1/sessiond.proto and messages.proto with the Python, typing stub (.pyi) and
gRPC outputs. OUT_DIR defaults to clients/python/src, where the stubs are
checked in; the test suite generates them again into a temporary directory
and fails when they differ, so they are never edited by hand.
"""

from __future__ import annotations

import pathlib
import sys

import grpc_tools
from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parents[1] / "proto"
PROTOS = ["sessiond/v1/sessiond.proto", "sessiond/v1/messages.proto"]
# The generated files, relative to OUT_DIR.
GENERATED = [
    "sessiond/v1/sessiond_pb2.py",
    "sessiond/v1/sessiond_pb2.pyi",
    "sessiond/v1/sessiond_pb2_grpc.py",
    "sessiond/v1/messages_pb2.py",
    "sessiond/v1/messages_pb2.pyi",
    "sessiond/v1/messages_pb2_grpc.py",
]


def generate(out_dir: pathlib.Path) -> None:
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTOS,
    ])
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "src")

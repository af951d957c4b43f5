"""Fixtures for sessiond's Python client tests: a fresh server and its stubs.

The tests speak to a real `sessiond` binary (SESSIOND_BIN, default
target/debug/sessiond) started once for the test run on a free loopback port,
with a fresh data dir and config/roles.yaml.

The Python stubs are generated from proto/ by scripts/test-all and found on
PYTHONPATH. To run these tests by hand, from the repository root:

    python -m grpc_tools.protoc -I proto --python_out=STUBS --grpc_python_out=STUBS \\
        proto/sessiond/v1/sessiond.proto
    PYTHONPATH=STUBS python -m pytest tests/python
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from sessiond_server import Sessiond

try:
    from sessiond.v1 import sessiond_pb2_grpc
except ImportError as missing:  # pragma: no cover - a setup mistake, explained
    raise ImportError(
        "the sessiond.v1 Python stubs are not on PYTHONPATH; see this file's docstring"
    ) from missing

REPO_ROOT = Path(__file__).resolve().parents[2]
_servers: list[Sessiond] = []


@pytest.fixture(scope="session")
def sessiond(tmp_path_factory) -> Sessiond:
    """A running sessiond, shared by every test of the run."""
    binary = Path(os.environ.get("SESSIOND_BIN", REPO_ROOT / "target/debug/sessiond"))
    if not binary.is_file():
        pytest.fail(f"no sessiond binary at {binary}: run `cargo build` first")
    home = tmp_path_factory.mktemp("sessiond")
    server = Sessiond(
        binary=binary,
        roles_file=REPO_ROOT / "config/roles.yaml",
        data_dir=home / "data",
        log_path=home / "sessiond.log",
    )
    _servers.append(server)
    with server:
        yield server


@pytest.fixture(scope="session")
def channel(sessiond):
    with grpc.insecure_channel(sessiond.address) as channel:
        yield channel


# One client per sessiond.v1 service, all on the shared channel.


@pytest.fixture
def sessions(channel):
    return sessiond_pb2_grpc.SessionServiceStub(channel)


@pytest.fixture
def privileges(channel):
    return sessiond_pb2_grpc.PrivilegeServiceStub(channel)


@pytest.fixture
def storage(channel):
    return sessiond_pb2_grpc.StorageServiceStub(channel)


@pytest.fixture
def logs(channel):
    return sessiond_pb2_grpc.LogServiceStub(channel)


def pytest_terminal_summary(terminalreporter, exitstatus):
    """On failure, show what the server logged."""
    if exitstatus == 0:
        return
    for server in _servers:
        terminalreporter.section(f"sessiond log ({server.log_path})")
        terminalreporter.write_line(server.log_tail())

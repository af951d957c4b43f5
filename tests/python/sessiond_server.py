"""Starts a throwaway sessiond and waits until it is serving.

The pytest fixture in conftest.py uses `Sessiond`; the grpcurl flow uses the
command line, through scripts/lib/server.sh:

    python tests/python/sessiond_server.py wait-until-serving 127.0.0.1:50051 [PID]

Readiness is grpc.health.v1 `Check` answering SERVING, polled for at most
READY_WITHIN seconds: no fixed sleeps.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# How long a fresh sessiond may take to answer its health check.
READY_WITHIN = 10.0

# Reconnect quickly while the server is still starting.
_FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(address: str, within: float = READY_WITHIN, is_alive=lambda: True) -> None:
    """Returns once `address` answers health Check with SERVING.

    Raises TimeoutError after `within` seconds, or RuntimeError as soon as
    `is_alive()` says the server process has exited.
    """
    deadline = time.monotonic() + within
    with grpc.insecure_channel(address, options=_FAST_RECONNECT) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not is_alive():
                raise RuntimeError(f"sessiond exited before serving on {address}")
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=0.5, wait_for_ready=True)
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                continue
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
    raise TimeoutError(f"sessiond was not serving on {address} within {within:.0f} s")


class Sessiond:
    """One sessiond process on a free loopback port with its own data dir.

    Its stderr (the server's log) goes to `log_path`. Use as a context
    manager: entering starts it and waits until it serves; leaving stops it.
    """

    def __init__(self, binary: Path, roles_file: Path, data_dir: Path, log_path: Path):
        self.binary = binary
        self.roles_file = roles_file
        self.data_dir = data_dir
        self.log_path = log_path
        self.address = f"127.0.0.1:{free_port()}"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Sessiond:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [
                    str(self.binary),
                    "--listen", self.address,
                    "--data-dir", str(self.data_dir),
                    "--roles-file", str(self.roles_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_serving(self.address, is_alive=lambda: self._process.poll() is None)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server logged, for failure reports."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _is_running(pid: int) -> bool:
    """Whether process `pid` (not our child) still runs: exists and is no zombie."""
    if not Path("/proc").is_dir():  # no procfs to ask: assume it runs
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] != "wait-until-serving":
        print(f"usage: {Path(__file__).name} wait-until-serving HOST:PORT [PID]", file=sys.stderr)
        return 2
    pid = int(argv[2]) if len(argv) == 3 else None
    try:
        wait_until_serving(argv[1], is_alive=lambda: pid is None or _is_running(pid))
    except (TimeoutError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

"""A real sessiond for the client's tests, with API keys of two tenants.

The server is $SESSIOND_BIN (default target/debug/sessiond), started once
per test run on a free loopback port with a fresh data dir,
config/roles.yaml and an API keys file made with `sessiond hash-key
--generate`: tenant acme has a service key and an admin key, tenant globex
a service key. Every closed session's log is kept (for query_logs), and a
session holds at most STORAGE_MAX_KEYS keys (for ResourceExhausted).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from sessiond import Client, SessionId, SessiondError, Unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
STORAGE_MAX_KEYS = 16
READY_WITHIN = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _generate_key(binary: Path) -> tuple[str, str]:
    printed = subprocess.run([str(binary), "hash-key", "--generate"], check=True, capture_output=True,
                             text=True, env=_server_env({})).stdout
    field = lambda name: re.search(rf"^{name}:\s*(\S+)\s*$", printed, re.M).group(1)  # noqa: E731
    return field("key"), field("hash")


def _server_env(settings: dict) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith("SESSIOND_")}
    return {**env, **settings}


class Server:
    """The running sessiond: its address, keys by name, and its process (for SIGSTOP)."""

    def __init__(self, address: str, keys: dict[str, str], process: subprocess.Popen, log: Path):
        self.address, self.keys, self.process, self.log = address, keys, process, log

    def client(self, key: str = "acme", **options) -> Client:
        return Client(self.address, api_key=self.keys[key], **options)

    @contextmanager
    def stopped(self):
        """The server process stopped (SIGSTOP) for the block, continued after."""
        self.process.send_signal(signal.SIGSTOP)
        _wait_until_stopped(self.process.pid)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


def _wait_until_stopped(pid: int) -> None:
    """Waits until every thread of `pid` is stopped.

    SIGSTOP takes effect when one of the process's threads next runs and
    takes it, then stops the others: on a busy machine that thread may wait
    for a CPU while the others answer the next call."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                    states.append(stat.read().rsplit(")", 1)[1].split()[0])  # after the name, which may hold spaces
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that exited
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
    raise RuntimeError(f"sessiond (pid {pid}) did not stop within {READY_WITHIN} s of SIGSTOP")


def _binary() -> Path:
    binary = Path(os.environ.get("SESSIOND_BIN", REPO_ROOT / "target/debug/sessiond")).resolve()
    if not binary.is_file():
        pytest.fail(f"no sessiond binary at {binary}: run `cargo build` first")
    return binary


@contextmanager
def _sessiond(home: Path, entries: list[str], args: list[str] = (), client_options=None):
    """sessiond with `entries` as its API keys file and `args`, stopped when the block ends."""
    binary = _binary()
    keys_file = home / "api-keys.yaml"
    keys_file.write_text("keys:\n" + "".join(f"  - {entry}\n" for entry in entries))
    keys_file.chmod(0o600)
    address = f"127.0.0.1:{_free_port()}"
    log = home / "sessiond.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(binary), "--listen", address, "--data-dir", str(home / "data"), *args],
            env=_server_env({
                "SESSIOND_API_KEYS_FILE": str(keys_file),
                "SESSIOND_ROLES_FILE": str(REPO_ROOT / "config/roles.yaml"),
                "SESSIOND_SESSION_LOG_KEEP_ALL": "true",
                "SESSIOND_STORAGE_MAX_KEYS": str(STORAGE_MAX_KEYS),
            }),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=home,
        )
    server = Server(address, {}, process, log)
    try:
        _wait_until_serving(server, client_options or {})
        yield server
    finally:
        process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _key_entries(binary: Path, keys: dict[str, str], callers) -> list[str]:
    """Generates a key per (name, tenant, role) into `keys`; answers the keys file's entries.

    Service keys are allowed what the tests do beyond a login flow: change
    privileges and name sessions by id."""
    entries = []
    for name, tenant, role in callers:
        keys[name], hashed = _generate_key(binary)
        allow = ", allow: [change_privileges, session_ids]" if role == "service" else ""
        entries.append(f'{{name: {name}, tenant: {tenant}, role: {role}, hash: "{hashed}"{allow}}}')
    return entries


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    home = tmp_path_factory.mktemp("sessiond")
    keys = {}
    entries = _key_entries(_binary(), keys, [("acme", "acme", "service"), ("acme-admin", "acme", "admin"),
                                             ("globex", "globex", "service")])
    with _sessiond(home, entries, client_options={"api_key": keys["acme"]}) as server:
        server.keys = keys
        yield server


def _wait_until_serving(server: Server, client_options: dict) -> None:
    """Polls with a real call until sessiond answers anything but UNAVAILABLE: no fixed sleeps."""
    deadline = time.monotonic() + READY_WITHIN
    with Client(server.address, timeout=0.5, **client_options) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"sessiond exited before serving:\n{server.log.read_text()[-4000:]}")
            try:
                client.get_session(SessionId("0" * 8))
            except Unavailable:
                time.sleep(0.05)
                continue
            except SessiondError:
                return
    raise TimeoutError(f"sessiond was not serving on {server.address} within {READY_WITHIN} s")


@pytest.fixture
def client(server) -> Client:
    with server.client() as client:
        yield client

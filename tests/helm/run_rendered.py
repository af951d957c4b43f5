"""Runs sessiond the way a rendered Deployment would, on this machine.

    python tests/helm/run_rendered.py RENDERED_FILE SESSIOND_BIN

From the Deployment's sessiond container it takes the command and args (the
image's entrypoint, /usr/local/bin/sessiond, becomes SESSIOND_BIN) and the
environment: envFrom ConfigMaps and env entries, with configMapKeyRef
values looked up in the rendered ConfigMaps (secret references are left
out). The pod's volumes become temporary directories: ConfigMap and Secret
files projected into them are written there (a Secret the chart does not
render, such as tls.existingSecret, gets a fresh self-signed certificate
for its tls.crt, tls.key and ca.crt), emptyDirs and claims are empty. Every
setting naming a path under a mount is moved to its directory, and
SESSIOND_LISTEN to a free loopback port. Nothing else reaches the process:
its environment is exactly that.

Then it checks that sessiond answers grpc.health.v1 SERVING (with TLS: that
its startup probe, `sessiond probe`, passes), also for the service each
gRPC probe names; that every exec probe passes, run with the container's
environment; that the helm test Pod's command passes against it; that its
log is in the format the chart asked for, and that SIGTERM stops it with
exit code 0 within the pod's termination grace period.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from sessiond_server import free_port, wait_until_serving  # noqa: E402

IMAGE_ENTRYPOINT = ["/usr/local/bin/sessiond"]


def fail(message: str) -> None:
    print(f"  FAIL  {message}")
    raise SystemExit(1)


def ok(message: str) -> None:
    print(f"  ok    {message}")


def load(path: Path) -> tuple[dict, dict[str, dict], dict[str, dict], list[dict]]:
    """The Deployment, ConfigMaps' data, Secrets' decoded data and helm test Pods."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
    if len(deployments) != 1:
        fail(f"expected one Deployment, found {len(deployments)}")
    config_maps = {doc["metadata"]["name"]: doc.get("data", {}) for doc in docs if doc["kind"] == "ConfigMap"}
    secrets = {doc["metadata"]["name"]: {key: base64.b64decode(value).decode() for key, value in doc.get("data", {}).items()}
               for doc in docs if doc["kind"] == "Secret"}
    tests = [doc for doc in docs
             if doc["kind"] == "Pod" and doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    return deployments[0], config_maps, secrets, tests


def self_signed(directory: Path) -> dict[str, str]:
    """A certificate for localhost and 127.0.0.1, as a kubernetes.io/tls Secret's data."""
    key, cert = directory / "self-signed.key", directory / "self-signed.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return {"tls.crt": cert.read_text(), "tls.key": key.read_text(), "ca.crt": cert.read_text()}


def container_env(container: dict, config_maps: dict[str, dict]) -> dict[str, str]:
    """The container's environment, as the kubelet would assemble it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if name not in config_maps:
                fail(f"envFrom ConfigMap {name} is not rendered")
            prefix = source.get("prefix", "")
            env.update({prefix + key: value for key, value in config_maps[name].items()})
        else:
            print(f"  note  envFrom {source} left out (a Secret)")
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "configMapKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["configMapKeyRef"]
            if ref["key"] not in config_maps.get(ref["name"], {}):
                fail(f"{entry['name']}: ConfigMap {ref['name']} has no key {ref['key']}")
            env[entry["name"]] = config_maps[ref["name"]][ref["key"]]
        else:
            print(f"  note  {entry['name']} left out (from {next(iter(entry.get('valueFrom', {})), '?')})")
    return env


def materialise_volumes(pod_spec: dict, container: dict, config_maps: dict[str, dict], secrets: dict[str, dict],
                        root: Path) -> dict[str, Path]:
    """A directory for each mount, filled as the kubelet would; mountPath -> directory."""
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for index, mount in enumerate(container.get("volumeMounts", [])):
        volume = volumes[mount["name"]]
        directory = root / f"{index}-{mount['name']}"
        directory.mkdir()
        sources = []
        if "configMap" in volume:
            sources = [volume]
        elif "projected" in volume:
            sources = volume["projected"]["sources"]
        for source in sources:
            kind = "configMap" if "configMap" in source else "secret" if "secret" in source else None
            if kind is None:
                print(f"  note  {mount['mountPath']}: {next(iter(source))} source left out")
                continue
            name = source[kind]["name"]
            if kind == "configMap":
                data = config_maps.get(name)
                if data is None and source[kind].get("optional"):
                    print(f"  note  {mount['mountPath']}: optional ConfigMap {name} is not rendered: left empty")
                    continue
                if data is None:
                    fail(f"volume {mount['name']}: ConfigMap {name} is not rendered")
            elif name in secrets:
                data = secrets[name]
            else:
                data = self_signed(root)
                print(f"  note  Secret {name} is not the chart's: a self-signed certificate stands in for it")
            items = source[kind].get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                if item["key"] not in data:
                    fail(f"volume {mount['name']}: {kind} {name} has no key {item['key']}")
                target = directory / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])
                print(f"  file  {mount['mountPath']}/{item['path']} from {kind} {name}")
        mounts[mount["mountPath"]] = directory
    return mounts


def remap(env: dict[str, str], mounts: dict[str, Path]) -> dict[str, str]:
    """Moves every value that is a path under a mount to its directory."""
    remapped = dict(env)
    for name, value in env.items():
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                remapped[name] = str(mounts[mount_path]) + value[len(mount_path.rstrip("/")):]
                break
    return remapped


def check_health(address: str, service: str) -> None:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    label = f"service {service!r}" if service else "the server"
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        fail(f"health of {label}: {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}")
    ok(f"grpc.health.v1 Check for {label}: SERVING")


def run_sessiond_command(binary: Path, argv: list[str], env: dict[str, str], what: str) -> None:
    """Runs a probe's or a test Pod's sessiond command; it must exit 0."""
    started = time.monotonic()
    done = subprocess.run([str(binary), *argv], env=env, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    if done.returncode != 0:
        fail(f"{what}: `sessiond {' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()}")
    ok(f"{what}: `sessiond {' '.join(argv)}` exit 0 in {took:.2f} s: {done.stdout.strip()}")


def wait_until_probe_passes(binary: Path, argv: list[str], env: dict[str, str], is_alive, within: float = 30) -> None:
    """Runs the startup probe's command until it passes, as the kubelet would."""
    deadline = time.monotonic() + within
    while True:
        if not is_alive():
            fail("sessiond exited before its startup probe passed")
        done = subprocess.run([str(binary), *argv], env=env, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            fail(f"startup probe still failing after {within} s: {done.stderr.strip()}")
        time.sleep(0.1)


def sessiond_argv(command: list[str], what: str) -> list[str]:
    if command[:1] != IMAGE_ENTRYPOINT:
        fail(f"{what} runs {command}, not the image's sessiond")
    return command[1:]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rendered, binary = Path(argv[0]), Path(argv[1]).resolve()
    if not os.access(binary, os.X_OK):
        fail(f"no sessiond binary at {binary} (build it with `cargo build`, or set SESSIOND_BIN)")
    deployment, config_maps, secrets, tests = load(rendered)
    pod_spec = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod_spec["containers"] if c["name"] == "sessiond")

    command = container.get("command", IMAGE_ENTRYPOINT)
    if command[:1] != IMAGE_ENTRYPOINT:
        fail(f"the container's command {command} does not start with the image's sessiond")
    argv_run = [str(binary), *command[1:], *container.get("args", [])]

    with tempfile.TemporaryDirectory(prefix="sessiond-helm-") as scratch:
        root = Path(scratch)
        (root / "volumes").mkdir()
        mounts = materialise_volumes(pod_spec, container, config_maps, secrets, root / "volumes")
        env = remap(container_env(container, config_maps), mounts)
        address = f"127.0.0.1:{free_port()}"
        env["SESSIOND_LISTEN"] = address
        print(f"  run   {' '.join(argv_run)}")
        for name in sorted(env):
            print(f"        {name}={env[name]}")

        # A working directory of its own, so that nothing but the
        # environment can lead sessiond to a file.
        workdir = root / "cwd"
        workdir.mkdir()
        log_path = root / "sessiond.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv_run, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT)
        try:
            startup = container.get("startupProbe", {})
            if "exec" in startup:
                wait_until_probe_passes(binary, sessiond_argv(startup["exec"]["command"], "startupProbe"), env,
                                        is_alive=lambda: process.poll() is None)
            else:
                try:
                    wait_until_serving(address, is_alive=lambda: process.poll() is None)
                except (TimeoutError, RuntimeError) as error:
                    fail(str(error))
            ok(f"sessiond serving on {address}")
            for name in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "exec" in container.get(name, {}):
                    run_sessiond_command(binary, sessiond_argv(container[name]["exec"]["command"], name), env, name)
            for test in tests:
                test_container = test["spec"]["containers"][0]
                test_argv = sessiond_argv(test_container.get("command", IMAGE_ENTRYPOINT), "helm test Pod")
                test_argv += [f"--address={address}" if arg.startswith("--address=") else arg
                              for arg in test_container.get("args", [])]
                # The Pod's own environment: the image's, none of the server's.
                run_sessiond_command(binary, test_argv, {"SESSIOND_LISTEN": "0.0.0.0:50051"},
                                     f"helm test Pod {test['metadata']['name']} (Service address made local)")
            services = {container[name]["grpc"].get("service", "")
                        for name in ("startupProbe", "livenessProbe", "readinessProbe")
                        if "grpc" in container.get(name, {})}
            for service in sorted(services):
                check_health(address, service)

            grace = pod_spec.get("terminationGracePeriodSeconds", 30)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                fail(f"sessiond still running {grace} s after SIGTERM")
            if code != 0:
                fail(f"sessiond exited with code {code} after SIGTERM")
            ok(f"SIGTERM: exit code 0 after {time.monotonic() - started:.1f} s (grace period {grace} s)")

            lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
            if env.get("SESSIOND_LOG_FORMAT") == "json":
                bad = []
                for line in lines:
                    try:
                        json.loads(line)
                    except ValueError:
                        bad.append(line)
                if bad or not lines:
                    fail(f"log lines that are not JSON: {bad[:3] or 'no log at all'}")
                ok(f"log is JSON ({len(lines)} lines)")
        except BaseException:
            if process.poll() is None:
                process.kill()
                process.wait()
            print("---- sessiond log (last 40 lines) ----")
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-40:]))
            print("--------------------------------------")
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

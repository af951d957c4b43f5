"""Checks the manifests `helm template` rendered from one values file.

    python tests/helm/check_manifests.py KUBE_VERSION VALUES_FILE RENDERED_FILE

1. Validates every document against the Kubernetes API schemas of
   KUBE_VERSION, strictly (unknown fields are errors), with
   kubernetes-validate, offline. Custom resources are not in those
   schemas: the Gateway API's GRPCRoute is validated with jsonschema
   against the OpenAPI schema of its CRD, strictly too, taken from the
   Gateway API release in $SESSIOND_TEST_GATEWAY_API_CRDS (scripts/lib/helm.sh
   puts it there); the ServiceMonitor and PrometheusRule get a structural
   check.
2. Asserts what the chart promises for every values file (non-root,
   read-only pods; probes; settings; mounts; labels) and what that values
   file asks for (named after it: default, postgres, postgres-url, full).

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sessiond"

# Kinds outside Kubernetes' own API: checked structurally.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"),
}

IMAGE_USER = 65532
# Where the pods read the database URL from (SESSIOND_DATABASE_URL_FILE).
DATABASE_URL_FILE = "/etc/sessiond/database-url"
GRPC_PORT = 50051


class Checks:
    """Collects and prints the results of named checks."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.count = 0

    def __call__(self, ok: bool, what: str, detail: object = None) -> bool:
        self.count += 1
        if ok:
            print(f"  ok    {what}")
        else:
            print(f"  FAIL  {what}" + (f": {detail}" if detail is not None else ""))
            self.failed.append(what)
        return ok


class Rendered:
    """The rendered documents, found by kind and name."""

    def __init__(self, path: Path):
        self.docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]

    def all(self, kind: str) -> list[dict]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict | None:
        found = [doc for doc in self.all(kind) if name is None or doc["metadata"]["name"] == name]
        return found[0] if len(found) == 1 else None


def seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)s", text)
    if not match:
        raise ValueError(f"not a duration in whole seconds: {text!r}")
    return int(match.group(1))


def is_subset(small: dict, big: dict) -> bool:
    return all(big.get(key) == value for key, value in small.items())


def minor(kube_version: str) -> tuple[int, int]:
    major, minor_, *_ = kube_version.split(".")
    return int(major), int(minor_)


def sessiond_args(container: dict) -> list[str] | None:
    """The arguments after the image's sessiond, or None when it runs something else."""
    command = container.get("command", ["/usr/local/bin/sessiond"])
    if command[:1] != ["/usr/local/bin/sessiond"]:
        return None
    return [*command[1:], *container.get("args", [])]


# ---- 1. schemas -------------------------------------------------------------


def strict(schema: object) -> object:
    """A CRD's OpenAPI schema as JSON Schema that refuses unknown fields, as
    kubernetes-validate's strict mode does (the API server would prune
    them): every object with properties and no additionalProperties gets
    additionalProperties: false. `metadata` stays open (the API server
    validates it as ObjectMeta; its CRD schema is only `type: object`)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: (value if key in ("enum", "default", "example") else strict(value))
              for key, value in schema.items()}
    if "properties" in closed and "additionalProperties" not in closed \
            and not closed.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    return closed


def crd_schema(api_version: str, kind: str) -> dict:
    """The strict JSON Schema of `kind` at `api_version`, from its CRD in the
    Gateway API release."""
    crds = Path(os.environ["SESSIOND_TEST_GATEWAY_API_CRDS"])
    group, version = api_version.split("/")
    for path in sorted(crds.glob(f"{group}_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] != kind:
            continue
        for served in crd["spec"]["versions"]:
            if served["name"] == version and served.get("served"):
                return strict(served["schema"]["openAPIV3Schema"])
    raise SystemExit(f"error: no served {api_version} {kind} CRD in {crds}")


def schema_errors(doc: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


def check_crd_schema(doc: dict, check: Checks) -> None:
    name = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
    schema = crd_schema(doc["apiVersion"], doc["kind"])
    errors = schema_errors(doc, schema)
    check(not errors, f"{name} valid against its Gateway API CRD's schema (strict)", errors[:5])
    # The schema is applied for real: the same route spoilt is refused.
    spoilt = json.loads(json.dumps(doc))
    spoilt["spec"]["rules"][0]["backendRefs"][0]["port"] = "grpc"
    spoilt["spec"]["rules"][0]["backendRef"] = {}
    spoilt["spec"]["parentRefs"][0]["sectionName"] = "Not A Section"
    refused = {error.split(":")[0] for error in schema_errors(spoilt, schema)}
    expected = {"spec.rules.0.backendRefs.0.port", "spec.rules.0", "spec.parentRefs.0.sectionName"}
    check(expected <= refused, f"{name}: a string port, an unknown field and a bad section name are refused",
          sorted(refused))


def check_custom_resource(doc: dict, check: Checks) -> None:
    name = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
    spec = doc.get("spec") or {}
    if doc["kind"] == "GRPCRoute":
        check_crd_schema(doc, check)
        return
    if doc["kind"] == "PrometheusRule":
        groups = spec.get("groups")
        check(bool(doc.get("metadata", {}).get("name")) and set(spec) == {"groups"}
              and isinstance(groups, list) and len(groups) > 0
              and all(g.get("name") and g.get("rules") and all(r.get("alert") and r.get("expr") for r in g["rules"])
                      for g in groups),
              f"{name} (custom resource): spec.groups[].rules[] each with alert and expr")
        return
    endpoints = spec.get("endpoints")
    check(
        bool(doc.get("apiVersion")) and bool(doc.get("kind")) and bool(doc.get("metadata", {}).get("name"))
        and isinstance(spec.get("selector", {}).get("matchLabels"), dict)
        and isinstance(endpoints, list) and len(endpoints) > 0
        and all(isinstance(e, dict) and e.get("port") for e in endpoints),
        f"{name} (custom resource): apiVersion, kind, metadata.name, spec.selector, spec.endpoints[].port",
    )


def validate_all(rendered: Rendered, kube_version: str, check: Checks) -> None:
    for doc in rendered.docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_RESOURCES:
            check_custom_resource(doc, check)
            continue
        try:
            version = kubernetes_validate.validate(doc, kube_version, strict=True)
            check(True, f"{name} valid against Kubernetes {version} (strict)")
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            check(False, f"{name} valid against Kubernetes {kube_version} (strict)", f"{path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            check(False, f"{name} has a Kubernetes schema", error.message)


# ---- 2. what every values file gets ------------------------------------------


class Server:
    """The Deployment's pod and its sessiond container, with its settings."""

    def __init__(self, rendered: Rendered):
        self.deployment = rendered.one("Deployment")
        assert self.deployment is not None, "exactly one Deployment"
        self.pod = self.deployment["spec"]["template"]
        self.spec = self.pod["spec"]
        containers = [c for c in self.spec["containers"] if c["name"] == "sessiond"]
        assert len(containers) == 1, "one container named sessiond"
        self.container = containers[0]
        self.env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            config_map = rendered.one("ConfigMap", source["configMapRef"]["name"])
            self.env.update((config_map or {}).get("data", {}))
        self.env_refs = {e["name"]: e for e in self.container.get("env", [])}
        for entry in self.container.get("env", []):
            if "value" in entry:
                self.env[entry["name"]] = entry["value"]
        self.mounts = {m["mountPath"]: m for m in self.container.get("volumeMounts", [])}
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}

    def volume_at(self, path: str) -> dict | None:
        mount = self.mounts.get(path)
        return self.volumes.get(mount["name"]) if mount else None

    def projected_file(self, path: str) -> tuple[dict, dict] | None:
        """(source, item) of the projected file the container sees at `path`."""
        for mount_path, mount in self.mounts.items():
            if not path.startswith(mount_path + "/"):
                continue
            volume = self.volumes[mount["name"]]
            for source in volume.get("projected", {}).get("sources", []):
                for item in next(iter(source.values())).get("items", []):
                    if item["path"] == path[len(mount_path) + 1:]:
                        return source, item
        return None


def check_security(where: str, pod_spec: dict, container: dict, check: Checks) -> None:
    pod = pod_spec.get("securityContext", {})
    ctx = container.get("securityContext", {})
    check(pod.get("runAsNonRoot") is True and pod.get("runAsUser") == IMAGE_USER,
          f"{where}: pod runs as non-root user {IMAGE_USER}", pod)
    check(ctx.get("runAsNonRoot") is True and ctx.get("runAsUser") == IMAGE_USER,
          f"{where}: container runs as non-root user {IMAGE_USER}", ctx)
    check(ctx.get("readOnlyRootFilesystem") is True, f"{where}: read-only root filesystem")
    check(ctx.get("allowPrivilegeEscalation") is False, f"{where}: no privilege escalation")
    check(ctx.get("capabilities", {}).get("drop") == ["ALL"] and not ctx.get("capabilities", {}).get("add"),
          f"{where}: drops ALL capabilities, adds none", ctx.get("capabilities"))
    seccomp = ctx.get("seccompProfile") or pod.get("seccompProfile") or {}
    check(seccomp.get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault")
    check(pod_spec.get("automountServiceAccountToken") is False, f"{where}: no service account token")
    check(pod_spec.get("enableServiceLinks") is False, f"{where}: no service link variables")


def check_common(rendered: Rendered, server: Server, values: dict, kube_version: str, check: Checks) -> None:
    tls = bool(values.get("tls", {}).get("enabled"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deployment, pod, container, env = server.deployment, server.pod, server.container, server.env

    for doc in rendered.docs:
        labels = doc["metadata"].get("labels", {})
        if not ("app.kubernetes.io/name" in labels and "app.kubernetes.io/instance" in labels):
            check(False, f"{doc['kind']}/{doc['metadata']['name']} has the chart's labels", labels)
    check(True, "every resource has the app.kubernetes.io name and instance labels")

    check(is_subset(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]),
          "Deployment's selector matches its pods")
    check_security("Deployment", server.spec, container, check)
    account = rendered.one("ServiceAccount")
    if account is not None:
        check(account.get("automountServiceAccountToken") is False, "ServiceAccount does not mount its token")
        check(server.spec.get("serviceAccountName") == account["metadata"]["name"], "pods use the ServiceAccount")

    # The image the chart's appVersion names, run with its own entrypoint.
    check(container["image"].endswith(":" + str(chart["appVersion"])) or "@sha256:" in container["image"],
          f"image tag defaults to appVersion {chart['appVersion']}", container["image"])
    check("command" not in container or container["command"] == ["/usr/local/bin/sessiond"],
          "container runs the image's sessiond", container.get("command"))

    # Service.
    service = rendered.one("Service", deployment["metadata"]["name"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    container_ports = {p["name"]: p for p in container.get("ports", [])}
    check(service["spec"]["type"] == "ClusterIP", "Service is ClusterIP")
    check(is_subset(service["spec"]["selector"], pod["metadata"]["labels"]), "Service selects the pods")
    check(ports.get("grpc", {}).get("appProtocol") == "grpc" and ports["grpc"].get("targetPort") == "grpc"
          and container_ports.get("grpc", {}).get("containerPort") == GRPC_PORT,
          f"Service port grpc (appProtocol grpc) reaches container port {GRPC_PORT}", ports)

    # Settings.
    check(container.get("envFrom", [{}])[0].get("configMapRef") is not None, "settings come from a ConfigMap (envFrom)")
    check(env.get("SESSIOND_LISTEN") == f"0.0.0.0:{GRPC_PORT}", f"SESSIOND_LISTEN=0.0.0.0:{GRPC_PORT}",
          env.get("SESSIOND_LISTEN"))
    check(env.get("SESSIOND_LOG_FORMAT") == "json", "SESSIOND_LOG_FORMAT=json")
    check(env.get("SESSIOND_DATA_DIR") == "/data" and server.volume_at("/data") is not None
          and not server.mounts["/data"].get("readOnly"), "SESSIOND_DATA_DIR=/data on a writable volume")
    tmp = server.volume_at("/tmp")
    check(tmp is not None and "emptyDir" in tmp, "/tmp is a writable emptyDir")
    check(all(isinstance(value, str) for value in env.values()), "every setting is a string")
    check(all(name.startswith("SESSIOND_") for name in env), "every setting is a SESSIOND_* variable", sorted(env))

    # Files named by settings are mounted from objects that exist.
    for variable in ("SESSIOND_ROLES_FILE", "SESSIOND_SESSION_LOG_POLICY_FILE", "SESSIOND_API_KEYS_FILE",
                     "SESSIOND_TLS_CERT", "SESSIOND_TLS_KEY", "SESSIOND_TLS_CLIENT_CA"):
        if variable not in env:
            continue
        found = server.projected_file(env[variable])
        if not check(found is not None, f"{variable}={env[variable]} is a mounted file"):
            continue
        source, item = found
        if "configMap" in source:
            config_map = rendered.one("ConfigMap", source["configMap"]["name"])
            check(config_map is not None and item["key"] in config_map.get("data", {}),
                  f"  ... from ConfigMap {source['configMap']['name']} key {item['key']}")
    check("SESSIOND_ROLES_FILE" in env and env["SESSIOND_ROLES_FILE"].startswith("/etc/sessiond/"),
          "the roles file is mounted under /etc/sessiond")

    # Rolling on change.
    annotations = pod["metadata"].get("annotations", {})
    check(bool(re.fullmatch(r"[0-9a-f]{64}", annotations.get("checksum/settings", ""))),
          "pods carry a checksum of the ConfigMaps")
    chart_secret = rendered.one("Secret", deployment["metadata"]["name"])
    check((chart_secret is not None) == ("checksum/secret" in annotations),
          "pods carry a checksum of the chart's Secret exactly when there is one")

    # Stopping.
    grace = server.spec.get("terminationGracePeriodSeconds", 30)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    asked = values.get("shutdown", {}).get("preStopSleepSeconds", 5)
    if minor(kube_version) >= (1, 30):
        check(pre_stop == asked and (asked > 0) == ("lifecycle" in container),
              f"Kubernetes {kube_version}: a preStop sleep of shutdown.preStopSleepSeconds ({asked})",
              container.get("lifecycle"))
    else:
        check("lifecycle" not in container,
              f"Kubernetes {kube_version}: no preStop hook (the sleep action needs 1.30)", container.get("lifecycle"))
    drain = seconds(env["SESSIOND_DRAIN_TIMEOUT"])
    check(grace > pre_stop + drain,
          f"terminationGracePeriodSeconds {grace} > preStop sleep {pre_stop} + drain timeout {drain}")

    # Probes.
    for name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(name, {})
        if tls:
            command = probe.get("exec", {}).get("command", [])
            timeout = probe.get("timeoutSeconds")
            check(command[:2] == ["/usr/local/bin/sessiond", "probe"] and f"--timeout={timeout}s" in command
                  and set(probe) & {"grpc", "tcpSocket", "httpGet"} == set(),
                  f"{name} runs `sessiond probe --timeout={timeout}s` (the kubelet's gRPC probe has no TLS)", probe)
        else:
            check(probe.get("grpc", {}).get("port") == GRPC_PORT and "tcpSocket" not in probe,
                  f"{name} is a native gRPC probe on {GRPC_PORT}", probe)
    readiness_service = values.get("probes", {}).get("readiness", {}).get("service", "sessiond.v1.SessionService")
    if tls:
        check(f"--service={readiness_service}" in container["readinessProbe"]["exec"]["command"],
              f"readinessProbe checks service {readiness_service}")
    else:
        check(container["readinessProbe"]["grpc"].get("service") == readiness_service,
              f"readinessProbe checks service {readiness_service}")

    # The headless Service, for client-side balancing.
    headless = rendered.one("Service", f"{deployment['metadata']['name']}-headless")
    if values.get("service", {}).get("headless", {}).get("enabled", True):
        if check(headless is not None, "a headless Service"):
            headless_ports = {p["name"]: p for p in headless["spec"]["ports"]}
            grpc = headless_ports.get("grpc", {})
            check(headless["spec"].get("clusterIP") == "None" and not headless["spec"].get("publishNotReadyAddresses")
                  and is_subset(headless["spec"]["selector"], pod["metadata"]["labels"])
                  and grpc.get("targetPort") == "grpc" and grpc.get("appProtocol") == "grpc",
                  "headless Service: clusterIP None, ready pods only, port grpc")
    else:
        check(headless is None, "no headless Service")

    # The `helm test` Pod.
    test_pods = [doc for doc in rendered.all("Pod")
                 if doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if values.get("tests", {}).get("enabled", True):
        if check(len(test_pods) == 1, "one helm test Pod"):
            test = test_pods[0]
            probe = test["spec"]["containers"][0]
            args = sessiond_args(probe) or []
            namespace = deployment["metadata"]["namespace"]
            address = f"--address={service['metadata']['name']}.{namespace}.svc:{ports['grpc']['port']}"
            check(probe["image"] == container["image"] and args[:1] == ["probe"] and address in args
                  and f"--service={readiness_service}" in args and (("--tls" in args) == tls),
                  f"test Pod runs `sessiond probe {address}` from the sessiond image"
                  + (" over TLS" if tls else ""), args)
            check(test["spec"].get("restartPolicy") == "Never", "test Pod is not restarted")
            check_security("test Pod", test["spec"], probe, check)
    else:
        check(not test_pods, "no helm test Pod")

    check(bool(container.get("resources", {}).get("requests")), "the container has resource requests")
    for constraint in server.spec.get("topologySpreadConstraints", []):
        check(constraint.get("whenUnsatisfiable") == "ScheduleAnyway"
              and is_subset(constraint["labelSelector"]["matchLabels"], pod["metadata"]["labels"]),
              f"topology spread over {constraint['topologyKey']} is soft and selects the pods")


def check_migrations_job(rendered: Rendered, check: Checks) -> dict | None:
    jobs = rendered.all("Job")
    if not check(len(jobs) == 1, "one migrations Job"):
        return None
    job = jobs[0]
    annotations = job["metadata"].get("annotations", {})
    check(set(annotations.get("helm.sh/hook", "").split(",")) == {"pre-install", "pre-upgrade"},
          "Job is a pre-install,pre-upgrade Helm hook", annotations.get("helm.sh/hook"))
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    check(container.get("args") == ["migrate"] and "command" not in container, "Job runs `sessiond migrate`")
    check(spec.get("restartPolicy") == "Never", "Job pods are not restarted in place")
    check_security("Job", spec, container, check)
    return job


def check_database_url_file(server: Server, secret: dict, check: Checks) -> None:
    """The server reads the database URL from the Secret `secret` (name, key) mounted as a file."""
    check(server.env.get("SESSIOND_DATABASE_URL_FILE") == DATABASE_URL_FILE,
          f"SESSIOND_DATABASE_URL_FILE={DATABASE_URL_FILE} in the ConfigMap", server.env.get("SESSIOND_DATABASE_URL_FILE"))
    check("SESSIOND_DATABASE_URL" not in server.env_refs and "SESSIOND_DATABASE_URL" not in server.env,
          "no SESSIOND_DATABASE_URL variable: the URL comes only from the file")
    mounted = server.projected_file(DATABASE_URL_FILE)
    source = (mounted or ({}, {}))[0].get("secret", {})
    item = (mounted or ({}, {}))[1]
    check(source.get("name") == secret["name"] and item.get("key") == secret["key"],
          f"{DATABASE_URL_FILE} is key {secret['key']} of Secret {secret['name']}, mounted without subPath "
          "(so the kubelet updates it in place)", mounted)
    mount = server.mounts.get("/etc/sessiond", {})
    check("subPath" not in mount, "the projected volume is mounted whole", mount)


def secret_ref(container: dict, variable: str) -> dict | None:
    for entry in container.get("env", []):
        if entry["name"] == variable:
            return entry.get("valueFrom", {}).get("secretKeyRef")
    return None


# ---- 2. what each values file asks for ---------------------------------------


def check_default(rendered: Rendered, server: Server, values: dict, check: Checks) -> None:
    check(server.deployment["spec"].get("replicas") == 1, "embedded store: exactly 1 replica")
    check(server.deployment["spec"].get("strategy", {}).get("type") == "Recreate",
          "embedded store: Recreate, never two pods on one store")
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "NetworkPolicy",
                 "ServiceMonitor", "PersistentVolumeClaim"):
        check(not rendered.all(kind), f"no {kind}")
    secrets = rendered.all("Secret")
    check([sorted(secret.get("data", {})) for secret in secrets] == [["api-keys.yaml"]],
          "one Secret, holding only the API keys file", [sorted(secret.get("data", {})) for secret in secrets])
    check("SESSIOND_DATABASE_URL" not in server.env_refs and "SESSIOND_DATABASE_URL_FILE" not in server.env
          and server.projected_file(DATABASE_URL_FILE) is None, "no database URL")
    check("emptyDir" in (server.volume_at("/data") or {}), "/data is an emptyDir")
    files = rendered.one("ConfigMap", server.deployment["metadata"]["name"] + "-files")
    roles = (ROOT / "config" / "roles.yaml").read_text()
    check(files is not None and files["data"].get("roles.yaml") == roles,
          "the roles file is config/roles.yaml, as shipped")


def check_postgres(rendered: Rendered, server: Server, values: dict, check: Checks) -> None:
    database = values["database"]
    check("replicas" not in server.deployment["spec"], "autoscaled: the Deployment leaves replicas to the HPA")
    hpa = rendered.one("HorizontalPodAutoscaler")
    if check(hpa is not None and hpa["apiVersion"] == "autoscaling/v2", "an autoscaling/v2 HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        check(spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": server.deployment["metadata"]["name"]}, "HPA scales the Deployment")
        check((spec["minReplicas"], spec["maxReplicas"])
              == (values["autoscaling"]["minReplicas"], values["autoscaling"]["maxReplicas"]),
              f"HPA between {spec['minReplicas']} and {spec['maxReplicas']} replicas")
        targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in spec["metrics"]}
        check(targets == {"cpu": 75, "memory": 80}, "HPA targets CPU 75% and memory 80%", targets)
    check_pdb(rendered, server, check)
    strategy = server.deployment["spec"].get("strategy", {})
    check(strategy.get("type") == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0,
          "database: rolling updates that keep every replica serving")

    expected_ref = {"name": database["existingSecret"], "key": database["existingSecretKey"]}
    check_database_url_file(server, expected_ref, check)
    env = server.env
    check((env.get("SESSIOND_DB_POOL_SIZE"), env.get("SESSIOND_DB_CONNECT_TIMEOUT"),
           env.get("SESSIOND_DB_STATEMENT_TIMEOUT")) == ("8", "3s", "10s"),
          "pool size and timeouts in the ConfigMap")
    check((env.get("SESSIOND_CACHE_CAPACITY"), env.get("SESSIOND_MAX_REQUEST_BYTES"),
           env.get("SESSIOND_LOG_KEEP_ALL")) == ("200000", "4194304", "true"),
          "settings: numbers print as integers, booleans as true/false",
          {k: env.get(k) for k in ("SESSIOND_CACHE_CAPACITY", "SESSIOND_MAX_REQUEST_BYTES", "SESSIOND_LOG_KEEP_ALL")})
    check(not rendered.all("Secret"), "no Secret of the chart's own (the URL's Secret exists)")

    job = check_migrations_job(rendered, check)
    if job:
        container = job["spec"]["template"]["spec"]["containers"][0]
        check(secret_ref(container, "SESSIOND_DATABASE_URL") == expected_ref, "Job reads the same database Secret")

    policy = rendered.one("NetworkPolicy")
    if check(policy is not None, "a NetworkPolicy"):
        egress_ports = {(p["port"], p.get("protocol")) for rule in policy["spec"]["egress"] for p in rule["ports"]}
        check({(53, "UDP"), (53, "TCP"), (5432, "TCP")} <= egress_ports, "egress to DNS and PostgreSQL",
              egress_ports)
        postgres_rule = next(r for r in policy["spec"]["egress"] if r["ports"][0]["port"] == 5432)
        check(postgres_rule.get("to") == values["networkPolicy"]["postgres"]["to"], "PostgreSQL egress to its peers")
        check(is_subset(policy["spec"]["podSelector"]["matchLabels"], server.pod["metadata"]["labels"])
              and (job is None or is_subset(policy["spec"]["podSelector"]["matchLabels"],
                                            job["spec"]["template"]["metadata"]["labels"])),
              "NetworkPolicy covers the server's pods and the Job's")


def check_pdb(rendered: Rendered, server: Server, check: Checks) -> None:
    pdb = rendered.one("PodDisruptionBudget")
    if check(pdb is not None, "a PodDisruptionBudget"):
        check(pdb["spec"].get("minAvailable") == 1, "PDB keeps at least 1 pod")
        check(is_subset(pdb["spec"]["selector"]["matchLabels"], server.pod["metadata"]["labels"]),
              "PDB selects the pods")


def check_postgres_url(rendered: Rendered, server: Server, values: dict, check: Checks) -> None:
    name = server.deployment["metadata"]["name"]
    url = values["database"]["url"]
    check(server.deployment["spec"].get("replicas") == values["replicaCount"],
          f"database: {values['replicaCount']} replicas as asked")
    check_pdb(rendered, server, check)
    secret = rendered.one("Secret", name)
    check(secret is not None and base64.b64decode(secret["data"]["database-url"]).decode() == url,
          "the chart's Secret holds database.url")
    check_database_url_file(server, {"name": name, "key": "database-url"}, check)
    check(rendered.one("ServiceAccount") is None and server.spec["serviceAccountName"] == "sessiond-runner",
          "pods run as the existing ServiceAccount")
    affinity = server.spec.get("affinity", {}).get("podAntiAffinity", {})
    check("requiredDuringSchedulingIgnoredDuringExecution" in affinity, "hard anti-affinity as asked")

    job = check_migrations_job(rendered, check)
    hook_secret = rendered.one("Secret", f"{name}-migrations")
    if check(hook_secret is not None, "a hook Secret for the Job (hooks run before the release's Secret exists)"):
        annotations = hook_secret["metadata"]["annotations"]
        check(base64.b64decode(hook_secret["data"]["database-url"]).decode() == url, "hook Secret holds database.url")
        check(annotations.get("helm.sh/hook") == "pre-install,pre-upgrade", "hook Secret is a hook too")
        if job:
            job_weight = int(job["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
            check(int(annotations.get("helm.sh/hook-weight", "0")) < job_weight, "hook Secret is created before the Job")
            container = job["spec"]["template"]["spec"]["containers"][0]
            check(secret_ref(container, "SESSIOND_DATABASE_URL") == {"name": f"{name}-migrations", "key": "database-url"},
                  "Job reads the hook Secret")
            check(job["spec"]["template"]["spec"].get("serviceAccountName") == "sessiond-runner",
                  "Job runs as the existing ServiceAccount")


def check_full(rendered: Rendered, server: Server, values: dict, check: Checks) -> None:
    name = server.deployment["metadata"]["name"]
    env = server.env
    check(server.deployment["spec"].get("replicas") == 1, "embedded store: exactly 1 replica")
    check(not rendered.all("HorizontalPodAutoscaler") and not rendered.all("PodDisruptionBudget")
          and not rendered.all("Job"), "no HPA, PDB or Job for the embedded store")

    # The dashboard for Grafana's sidecar and the alerts, as shipped.
    dashboard = rendered.one("ConfigMap", f"{name}-dashboard")
    check(dashboard is not None and dashboard["metadata"]["labels"].get("grafana_dashboard") == "1"
          and json.loads(dashboard["data"]["sessiond.json"]) == json.loads((CHART / "files" / "dashboard.json").read_text()),
          "the dashboard ConfigMap carries the sidecar label and files/dashboard.json")
    rule = rendered.one("PrometheusRule")
    shipped = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    check(rule is not None and rule["spec"] == shipped and rule["metadata"]["labels"].get("release") == "prometheus",
          "the PrometheusRule holds files/alerts.yaml, with the labels asked for")

    # Persistence.
    pvc = rendered.one("PersistentVolumeClaim")
    data = server.volume_at("/data") or {}
    check(pvc is not None and data.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"],
          "/data is the chart's PersistentVolumeClaim")
    if pvc:
        check(pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
              and pvc["spec"].get("storageClassName") == "fast-ssd", "claim of 5Gi on storage class fast-ssd")

    # TLS: files from the existing Secrets.
    expected = {
        "SESSIOND_TLS_CERT": ("sessiond-tls", "tls.crt"),
        "SESSIOND_TLS_KEY": ("sessiond-tls", "tls.key"),
        "SESSIOND_TLS_CLIENT_CA": ("sessiond-client-ca", "ca.crt"),
    }
    for variable, (secret, key) in expected.items():
        found = server.projected_file(env.get(variable, "-"))
        check(found is not None and found[0].get("secret", {}).get("name") == secret and found[1]["key"] == key,
              f"{variable} is key {key} of Secret {secret}")

    # API keys: the chart's Secret holds the file.
    found = server.projected_file(env.get("SESSIOND_API_KEYS_FILE", "-"))
    secret = rendered.one("Secret", name)
    if check(found is not None and secret is not None and found[0].get("secret", {}).get("name") == name,
             "SESSIOND_API_KEYS_FILE is a file of the chart's Secret"):
        keys_file = yaml.safe_load(base64.b64decode(secret["data"][found[1]["key"]]))
        # The file spells the chart's maxConcurrentCalls and maxStreams as sessiond does.
        spelt = {"maxConcurrentCalls": "max_concurrent_calls", "maxStreams": "max_streams"}
        expected = [{spelt.get(k, k): v for k, v in key.items()} for key in values["auth"]["apiKeys"]]
        check(keys_file == {"keys": expected}, "the API keys file lists auth.apiKeys", keys_file)

    # Serving without authentication only when asked for.
    allow = values["auth"].get("allowUnauthenticated", False)
    check(env.get("SESSIOND_ALLOW_UNAUTHENTICATED") == ("true" if allow else None),
          f"SESSIOND_ALLOW_UNAUTHENTICATED {'is true' if allow else 'is not set'}", env.get("SESSIOND_ALLOW_UNAUTHENTICATED"))

    # Telemetry and metrics.
    check(env.get("SESSIOND_OTLP_ENDPOINT") == values["telemetry"]["otlpEndpoint"], "SESSIOND_OTLP_ENDPOINT")
    check(env.get("SESSIOND_METRICS_LISTEN") == "0.0.0.0:9090", "SESSIOND_METRICS_LISTEN=0.0.0.0:9090")
    container_ports = {p["name"]: p["containerPort"] for p in server.container["ports"]}
    service_ports = {p["name"]: p for p in rendered.one("Service", name)["spec"]["ports"]}
    check(container_ports.get("metrics") == 9090 and service_ports.get("metrics", {}).get("targetPort") == "metrics",
          "metrics port 9090 on the container and the Service")
    monitor = rendered.one("ServiceMonitor")
    if check(monitor is not None and monitor["apiVersion"] == "monitoring.coreos.com/v1", "a ServiceMonitor"):
        check(monitor["spec"]["endpoints"][0]["port"] == "metrics"
              and monitor["metadata"]["labels"].get("release") == "prometheus",
              "ServiceMonitor scrapes port metrics, labelled for Prometheus")
        check(is_subset(monitor["spec"]["selector"]["matchLabels"], rendered.one("Service", name)["metadata"]["labels"]),
              "ServiceMonitor selects the Service")

    # Log policy.
    files = rendered.one("ConfigMap", f"{name}-files")
    check(files is not None and files["data"].get("log-policy.yaml") == values["logPolicy"],
          "the log policy file is logPolicy")

    # NetworkPolicy.
    policy = rendered.one("NetworkPolicy")
    if check(policy is not None, "a NetworkPolicy"):
        ingress: dict[int, list] = {}
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                ingress.setdefault(port["port"], []).extend(rule["from"])
        test_peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sessiond",
                                                     "app.kubernetes.io/instance": server.pod["metadata"]["labels"][
                                                         "app.kubernetes.io/instance"],
                                                     "app.kubernetes.io/component": "test"}}}
        check(ingress.get(GRPC_PORT) == [*values["networkPolicy"]["grpcFrom"], test_peer],
              "gRPC ingress only from grpcFrom and the test Pod", ingress.get(GRPC_PORT))
        check(ingress.get(9090) == values["networkPolicy"]["metricsFrom"], "metrics ingress only from metricsFrom")
        egress_ports = {(p["port"], p.get("protocol")) for rule in policy["spec"]["egress"] for p in rule["ports"]}
        check(egress_ports == {(53, "UDP"), (53, "TCP"), (4317, "TCP"), (GRPC_PORT, "TCP")},
              "egress only to DNS, the OTLP collector and (the test Pod) sessiond's gRPC port", egress_ports)
        to_grpc = [rule for rule in policy["spec"]["egress"] if rule["ports"][0]["port"] == GRPC_PORT]
        check(len(to_grpc) == 1 and [peer["podSelector"]["matchLabels"] for peer in to_grpc[0].get("to", [])]
              == [server.deployment["spec"]["selector"]["matchLabels"]],
              "egress to gRPC only to the server's pods", to_grpc)
    check(server.pod["metadata"]["annotations"].get("example.com/team") == "shop", "podAnnotations on the pods")


def check_extras(rendered: Rendered, server: Server, values: dict, check: Checks) -> None:
    name = server.deployment["metadata"]["name"]
    spec, container = server.spec, server.container

    # Pod extensions.
    volumes = {v["name"]: v for v in spec["volumes"]}
    check(all(volumes.get(v["name"]) == v for v in values["extraVolumes"]), "extraVolumes are pod volumes")
    mounts = [m for m in container["volumeMounts"] if m["name"] == "policies"]
    check(mounts == values["extraVolumeMounts"], "extraVolumeMounts are sessiond's mounts")
    check(spec.get("initContainers") == values["initContainers"], "initContainers as given")
    sidecars = [c for c in spec["containers"] if c["name"] != "sessiond"]
    check(len(sidecars) == 1 and sidecars[0]["env"] == [{"name": "RELEASE", "value": "sessions"}],
          "extraContainers are added, rendered with tpl", sidecars)
    check(server.env.get("SESSIOND_LOG_KEEP_ALL") == "true", "extraEnv on sessiond")

    # Ingress.
    ingress = rendered.one("Ingress")
    if check(ingress is not None, "an Ingress"):
        rule = ingress["spec"]["rules"][0]
        backend = rule["http"]["paths"][0]["backend"]["service"]
        check(rule["host"] == "sessiond.example.com" and rule["http"]["paths"][0]["path"] == "/"
              and rule["http"]["paths"][0]["pathType"] == "Prefix"
              and backend == {"name": name, "port": {"name": "grpc"}},
              "Ingress routes sessiond.example.com/ to the Service's grpc port", rule)
        check(ingress["spec"].get("ingressClassName") == "nginx"
              and ingress["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/backend-protocol") == "GRPCS"
              and ingress["spec"]["tls"] == values["ingress"]["tls"], "Ingress class, annotations and TLS as given")

    # GRPCRoute.
    route = rendered.one("GRPCRoute")
    if check(route is not None, "a GRPCRoute"):
        check(route["spec"]["parentRefs"] == values["grpcRoute"]["parentRefs"]
              and route["spec"]["hostnames"] == values["grpcRoute"]["hostnames"], "GRPCRoute parents and hostnames")
        rule = route["spec"]["rules"][0]
        check(rule["backendRefs"] == [{"name": name, "port": GRPC_PORT}]
              and rule["matches"] == values["grpcRoute"]["matches"], "GRPCRoute sends its matches to the Service")


CASES = {
    "default": check_default,
    "extras": check_extras,
    "postgres": check_postgres,
    "postgres-url": check_postgres_url,
    "full": check_full,
}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    kube_version, values_file, rendered_file = argv[0], Path(argv[1]), Path(argv[2])
    case = values_file.stem
    if case not in CASES:
        print(f"error: no checks for values file {values_file.name}; known: {', '.join(CASES)}", file=sys.stderr)
        return 2
    values = yaml.safe_load(values_file.read_text()) or {}
    rendered = Rendered(rendered_file)
    check = Checks()

    print(f"{values_file.name}: schemas of Kubernetes {kube_version}")
    validate_all(rendered, kube_version, check)
    print(f"{values_file.name}: what the chart promises")
    server = Server(rendered)
    check_common(rendered, server, values, kube_version, check)
    print(f"{values_file.name}: what {values_file.name} asks for")
    CASES[case](rendered, server, values, check)

    print(f"{values_file.name}: {check.count - len(check.failed)} checks passed, {len(check.failed)} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

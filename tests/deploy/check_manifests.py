#!/usr/bin/env python3
"""Checks of the deployment files: deploy/k8s (Kubernetes) and deploy/compose (compose).

Run through tests/deploy/run.sh, which makes the venv this needs (kubernetes-validate,
PyYAML). Needs no network: kubernetes-validate ships the Kubernetes JSON schemas inside
the package, and this script makes any connection attempt an error to keep it that way.

  1. Schemas: every object of every file kustomization.yaml lists validates, strictly
     (no unknown fields), against the Kubernetes versions in KUBERNETES_VERSIONS; the
     kustomization lists exactly the YAML files of deploy/k8s and sets no namespace.
  2. Security lint (ours, below): every container of every pod template runs as
     non-root on a read-only root filesystem, cannot escalate, drops ALL capabilities,
     has a RuntimeDefault seccomp profile, CPU and memory requests and limits, and a
     pinned image tag; no pod uses the host's network, PID or IPC namespaces or a
     service account token; nothing is privileged.
  3. The StatefulSet: the drain fits in terminationGracePeriodSeconds, readiness is a
     gRPC probe of the Trainer on the gRPC port, BACKPROP_REPLICA_ID is the pod's name,
     the state directory is a volume claim, its headless Service exists.
  4. The proxy: its nginx configuration resolves the replicas through kube-dns, routes
     on $http_x_backprop_model to the StatefulSet's pods, keeps every directive of the
     hosts' reference location (deploy/nginx/backprop-server.conf); Services and
     budgets select real pods; `nginx -t` accepts it where nginx is installed.
  5. Compose: three replicas, each with BACKPROP_REPLICA_ID = its service name and a
     volume of its own; every service hardened and health-checked; the proxy on
     loopback by default, its mounted files present, its upstreams naming the replicas.
  6. The lint checks itself: broken copies of the manifests (runAsNonRoot removed,
     privileged added, the grace period too short, ...) must each be reported.

Exit status 0 iff every check passed; the last line reads `check_manifests: N passed, M
failed`.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
import kubernetes_validate.utils as kv
from kubernetes_validate.version import __version__ as KV_VERSION

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
NGINX_REFERENCE = REPO / "deploy" / "nginx" / "backprop-server.conf"

# The oldest Kubernetes the manifests are written for (native gRPC probes, the preStop
# `sleep` action and persistentVolumeClaimRetentionPolicy are all on by default from
# 1.30) and the newest whose schemas the pinned kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", "1.37")

# The one image that may go without a registry tag: backprop is built locally from
# docker/Dockerfile and loaded onto the nodes (there is no public registry tag to pin),
# and the manifests say to replace it with your registry's tag. Every other image (the
# proxy's nginx) must name a version.
LOCAL_IMAGES = {"backprop"}

GRPC_PORT = 50051
TRAINER_SERVICE = "backprop.v1.Trainer"
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


# ------------------------------------------------------------------------------ report


class Report:
    """Counts checks; prints failures as they happen and a summary line per section."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []

    def check(self, ok: bool, label: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            line = f"{label}: {detail}" if detail else label
            self.failures.append(line)
            print(f"  FAIL {line}")
        return ok

    def section(self, title: str, summary: str, failed_before: int) -> None:
        """A section's one-line summary: what was checked, or how many checks failed."""
        new = self.failed - failed_before
        print(f"{title}: {summary}" if new == 0 else f"{title}: {new} FAILED (above); checked: {summary}")

    def findings(self, label: str, found: list[str]) -> None:
        """One check per lint subject: passes iff there are no findings."""
        if not found:
            self.passed += 1
        for f in found:
            self.check(False, label, f)


# ------------------------------------------------------------------------------ loading


def no_network() -> None:
    """Any connection attempt from this process fails loudly: the checks are offline."""

    def refuse(self: socket.socket, address: Any) -> None:  # noqa: ARG001
        raise RuntimeError(f"check_manifests.py must not use the network (tried {address!r})")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign,assignment]
    socket.create_connection = lambda address, *a, **k: refuse(None, address)  # type: ignore[assignment]


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def where(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def load_manifests(report: Report) -> tuple[list[tuple[Path, dict]], dict]:
    """The objects of every file the kustomization lists, checking the list itself."""
    kust_path = K8S / "kustomization.yaml"
    kust = load_yaml_documents(kust_path)[0]
    listed = list(kust.get("resources") or [])
    on_disk = sorted(
        p.name for p in K8S.iterdir() if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml"
    )
    report.check(
        sorted(listed) == on_disk,
        "kustomization.yaml resources",
        f"lists {sorted(listed)}, deploy/k8s has {on_disk}",
    )
    report.check(len(set(listed)) == len(listed), "kustomization.yaml resources", "a file is listed twice")
    report.check(
        "namespace" not in kust,
        "kustomization.yaml",
        "sets a namespace: the manifests leave it to the user (kubectl -n, or an overlay)",
    )
    objects = []
    for name in listed:
        path = K8S / name
        if not report.check(path.is_file(), "kustomization.yaml resources", f"{name} does not exist"):
            continue
        try:
            docs = load_yaml_documents(path)
        except yaml.YAMLError as e:
            report.check(False, name, f"is not YAML: {e}")
            continue
        report.check(bool(docs), name, "holds no object")
        for doc in docs:
            ok = isinstance(doc, dict) and all(k in doc for k in ("apiVersion", "kind", "metadata"))
            if report.check(ok, name, "an object without apiVersion, kind and metadata"):
                objects.append((path, doc))
    keys = [(d["kind"], d["metadata"].get("name")) for _, d in objects]
    report.check(len(set(keys)) == len(keys), "deploy/k8s", f"an object is defined twice: {keys}")
    return objects, kust


# ------------------------------------------------------------------------------ schemas


def check_schemas(report: Report, objects: list[tuple[Path, dict]]) -> None:
    before = report.failed
    shipped = set(kv.all_versions())
    for version in KUBERNETES_VERSIONS:
        # kubernetes-validate falls back to an older schema for a version it lacks; here
        # a missing version is an error, so the versions above are really the ones used.
        report.check(
            f"{version}.0" in shipped,
            f"kubernetes-validate {KV_VERSION}",
            f"ships no schemas for Kubernetes {version} (it has {sorted(shipped)[-3:]}...)",
        )
    for path, doc in objects:
        for version in KUBERNETES_VERSIONS:
            label = f"{path.name} {where(doc)} against Kubernetes {version}"
            try:
                used = kv.validate(doc, version, strict=True)
                report.check(used == version, label, f"validated against {used} instead")
            except kv.ValidationError as e:
                at = ".".join(str(p) for p in e.path) or "(top)"
                report.check(False, label, f"{at}: {e.message}")
            except kv.SchemaNotFoundError as e:
                report.check(False, label, e.message)
    report.section(
        "schemas",
        f"{len(objects)} objects in {len({p for p, _ in objects})} files valid (strict) against "
        f"Kubernetes {', '.join(KUBERNETES_VERSIONS)} (kubernetes-validate {KV_VERSION}, "
        "schemas from the package)",
        before,
    )


# ------------------------------------------------------------------------------ lint


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    if kind in POD_TEMPLATE_KINDS:
        return (spec.get("template") or {}).get("spec")
    return None


def walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (path, key, value) in a nested structure."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            yield p, str(k), v
            yield from walk(v, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None."""
    if "@sha256:" in image:
        return None
    slash = image.rfind("/")
    name, _, tag = image[slash + 1 :].partition(":")
    if tag and tag != "latest":
        return None
    # Only the bare local name: registry.example.com/backprop must be pinned.
    if name in LOCAL_IMAGES and slash == -1:
        return None
    return f"image {image!r} has {'tag latest' if tag else 'no tag'}: pin a version (only the locally built {sorted(LOCAL_IMAGES)} may use latest)"


def lint_object(doc: dict) -> list[str]:
    """Security findings for one object (empty: clean)."""
    found: list[str] = []
    # Anywhere in the object, whatever the nesting.
    for path, key, value in walk(doc):
        if key in ("hostNetwork", "hostPID", "hostIPC") and value is True:
            found.append(f"{path}: true (the pod would share the node's namespace)")
        if key == "privileged" and value is True:
            found.append(f"{path}: true (a privileged container)")
    spec = pod_spec(doc)
    if spec is None:
        return found
    if spec.get("automountServiceAccountToken") is not False:
        found.append("automountServiceAccountToken is not false (a token the pod does not need)")
    pod_sc = spec.get("securityContext") or {}
    containers = [
        (kind, c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(kind) or []
    ]
    if not containers:
        found.append("the pod template has no containers")
    for kind, c in containers:
        name = f"{kind[:-1]} {c.get('name')!r}"
        sc = c.get("securityContext") or {}

        def effective(key: str) -> Any:
            return sc[key] if key in sc else pod_sc.get(key)

        if effective("runAsNonRoot") is not True:
            found.append(f"{name}: runAsNonRoot is not true (container or pod securityContext)")
        if effective("runAsUser") == 0:
            found.append(f"{name}: runAsUser is 0 (root)")
        if sc.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        if caps.get("add"):
            found.append(f"{name}: capabilities add {caps['add']}")
        seccomp = effective("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            found.append(f"{name}: no seccompProfile RuntimeDefault (container or pod securityContext)")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(part) or {}):
                    found.append(f"{name}: no resources.{part}.{what}")
        problem = image_problem(str(c.get("image", "")))
        if problem:
            found.append(f"{name}: {problem}")
    return found


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or [] if "name" in e}


def backprop_container(spec: dict) -> dict | None:
    for c in spec.get("containers") or []:
        if str(c.get("image", "")).rsplit("/", 1)[-1].split(":")[0] == "backprop":
            return c
    return None


def lint_statefulset(sts: dict) -> list[str]:
    """What the backprop StatefulSet must do beyond the general lint."""
    found: list[str] = []
    spec = pod_spec(sts) or {}
    c = backprop_container(spec)
    if c is None:
        return ["no container runs the backprop image"]
    env = env_of(c)

    grace_env = env.get("BACKPROP_SHUTDOWN_GRACE_SECS", {}).get("value")
    termination = spec.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
    try:
        grace = int(grace_env)
    except (TypeError, ValueError):
        found.append(f"BACKPROP_SHUTDOWN_GRACE_SECS is {grace_env!r}, not a number of seconds")
    else:
        if not termination > grace:
            found.append(
                f"terminationGracePeriodSeconds ({termination}) does not exceed "
                f"BACKPROP_SHUTDOWN_GRACE_SECS ({grace}): SIGKILL would cut the drain and "
                "the save of every session"
            )

    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    grpc_port = ports.get("grpc")
    if grpc_port != GRPC_PORT:
        found.append(f"the container's port named grpc is {grpc_port}, not {GRPC_PORT}")
    listen = env.get("BACKPROP_LISTEN", {}).get("value", "")
    if not listen.startswith("0.0.0.0:") or listen.rsplit(":", 1)[-1] != str(grpc_port):
        found.append(f"BACKPROP_LISTEN is {listen!r}, not 0.0.0.0:{grpc_port} (probes and the proxy reach the pod's IP)")

    for probe_name, service in (("readinessProbe", TRAINER_SERVICE), ("livenessProbe", None), ("startupProbe", None)):
        probe = c.get(probe_name)
        if not probe:
            found.append(f"no {probe_name}")
            continue
        grpc = probe.get("grpc")
        if not isinstance(grpc, dict):
            found.append(f"{probe_name} is not a grpc probe (the server speaks grpc.health.v1)")
            continue
        if grpc.get("port") != grpc_port:
            found.append(f"{probe_name} asks port {grpc.get('port')}, not the gRPC port {grpc_port}")
        if service is not None and grpc.get("service") != service:
            found.append(f"{probe_name} asks about service {grpc.get('service')!r}, not {service!r}")

    replica = env.get("BACKPROP_REPLICA_ID")
    path = (((replica or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    if path != "metadata.name":
        found.append(
            "BACKPROP_REPLICA_ID does not come from the pod's name (valueFrom.fieldRef.fieldPath: "
            f"metadata.name); it is {replica!r}"
        )

    state_dir = env.get("BACKPROP_STATE_DIR", {}).get("value")
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []}
    mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
    if not state_dir:
        found.append("BACKPROP_STATE_DIR is not set: sessions would not survive a restart")
    elif mounts.get(state_dir) not in claims:
        found.append(f"BACKPROP_STATE_DIR {state_dir} is not a volumeClaimTemplate's mount (one volume per replica)")
    if sts["spec"].get("podManagementPolicy") != "Parallel":
        found.append("podManagementPolicy is not Parallel")
    return found


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_workloads(report: Report, objects: list[tuple[Path, dict]]) -> dict:
    before = report.failed
    docs = [d for _, d in objects]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    workloads = [d for d in docs if pod_spec(d) is not None]
    containers = sum(len((pod_spec(d) or {}).get("containers") or []) for d in workloads)
    for d in docs:
        report.findings(f"lint {where(d)}", lint_object(d))
    report.section(
        "security lint",
        f"{len(docs)} objects, {len(workloads)} pod templates, {containers} containers: non-root, "
        "read-only root, no escalation, caps drop ALL, RuntimeDefault seccomp, requests and limits, "
        "pinned images, no host namespaces or privileged, no service account token",
        before,
    )
    before = report.failed

    stss = [d for d in by_kind.get("StatefulSet", []) if backprop_container(pod_spec(d) or {})]
    report.check(len(stss) == 1, "StatefulSet", f"expected one running backprop, found {len(stss)}")
    context: dict = {"by_kind": by_kind}
    if not stss:
        return context
    sts = stss[0]
    context["sts"] = sts
    report.findings(f"lint {where(sts)}", lint_statefulset(sts))
    spec = pod_spec(sts)
    c = backprop_container(spec)
    grace = env_of(c).get("BACKPROP_SHUTDOWN_GRACE_SECS", {}).get("value")

    # Services and budgets select the pods they are meant for.
    templates = [(d, ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}) for d in workloads]
    for svc in by_kind.get("Service", []):
        selector = svc["spec"].get("selector") or {}
        matched = [(d, labels) for d, labels in templates if selects(selector, labels)]
        if not report.check(len(matched) == 1, f"{where(svc)} selector", f"{selector} selects {len(matched)} pod templates"):
            continue
        target = matched[0][0]
        names = {p.get("name") for c in pod_spec(target)["containers"] for p in c.get("ports") or []}
        numbers = {p.get("containerPort") for c in pod_spec(target)["containers"] for p in c.get("ports") or []}
        for port in svc["spec"].get("ports") or []:
            t = port.get("targetPort", port.get("port"))
            report.check(t in names or t in numbers, f"{where(svc)} port {port.get('name')}", f"targetPort {t!r} is not a port of {where(target)}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selector = (pdb["spec"].get("selector") or {}).get("matchLabels") or {}
        matched = [d for d, labels in templates if selects(selector, labels)]
        report.check(len(matched) == 1, f"{where(pdb)} selector", f"{selector} selects {len(matched)} pod templates")
    for d in workloads:
        selector = ((d["spec"].get("selector") or {}).get("matchLabels")) or {}
        budgets = [p for p in by_kind.get("PodDisruptionBudget", []) if (p["spec"].get("selector") or {}).get("matchLabels") == selector]
        report.check(len(budgets) == 1, f"{where(d)}", "has no PodDisruptionBudget of its own")
        if d["kind"] == "StatefulSet" and budgets:
            report.check(budgets[0]["spec"].get("maxUnavailable") == 1, f"{where(budgets[0])}", "maxUnavailable is not 1")

    headless = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == sts["spec"].get("serviceName")]
    if report.check(len(headless) == 1, f"{where(sts)} serviceName", f"no Service named {sts['spec'].get('serviceName')!r}"):
        h = headless[0]["spec"]
        report.check(h.get("clusterIP") == "None", where(headless[0]), "is not headless (clusterIP: None)")
        report.check(h.get("publishNotReadyAddresses") is False, where(headless[0]), "publishNotReadyAddresses is not false")
        grpc_ports = [p for p in h.get("ports") or [] if p.get("name") == "grpc"]
        report.check(
            bool(grpc_ports) and grpc_ports[0].get("port") == GRPC_PORT and grpc_ports[0].get("appProtocol") == "grpc",
            where(headless[0]),
            f"has no port grpc {GRPC_PORT} with appProtocol grpc",
        )
    report.section(
        "statefulset",
        f"{where(sts)}: {sts['spec'].get('replicas')} replicas, terminationGracePeriodSeconds "
        f"{spec.get('terminationGracePeriodSeconds')} vs shutdown grace {grace}, readiness grpc "
        f"{TRAINER_SERVICE} on {GRPC_PORT}, BACKPROP_REPLICA_ID from metadata.name, state on a volume claim; "
        "its headless Service; every Service and PodDisruptionBudget selects one pod template",
        before,
    )
    return context


# ------------------------------------------------------------------------------ proxy


def nginx_directives(text: str) -> list[str]:
    """The simple `name args;` directives of an nginx file, comments dropped, whitespace
    normalised (block openers and closers are skipped)."""
    out = []
    for line in text.splitlines():
        line = strip_comment(line).strip()
        if line.endswith(";"):
            out.append(" ".join(line[:-1].split()))
    return out


def strip_comment(line: str) -> str:
    """The line up to a `#` that is outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def lint_proxy_config(config: str, sts: dict | None) -> list[str]:
    """What the proxy's nginx configuration (all of the ConfigMap's files) must do."""
    found: list[str] = []
    directives = nginx_directives(config)
    resolvers = [d for d in directives if d.startswith("resolver ")]
    if not any(re.match(r"resolver kube-dns\.kube-system\.svc\.\S+ .*\bvalid=\d+s\b", d) for d in resolvers):
        found.append(
            "no `resolver kube-dns.kube-system.svc.<domain> valid=...;`: the replicas' names "
            "must be looked up at run time, with a short validity"
        )
    if not re.search(r"^\s*map\s+\$http_x_backprop_model\s+\$\w+\s*\{", config, re.M):
        found.append("no `map $http_x_backprop_model ...`: calls are not routed on the x-backprop-model header")
    passes = [d for d in directives if d.startswith("grpc_pass ")]
    if not passes or not all("$" in d for d in passes):
        found.append(f"grpc_pass must name its target through a variable (resolved per call): {passes}")
    # Every directive of the hosts' reference location, but its upstream, is here too.
    for d in nginx_directives(NGINX_REFERENCE.read_text()):
        if d.startswith("grpc_pass "):
            continue
        if d not in directives:
            found.append(f"`{d};` of deploy/nginx/backprop-server.conf is missing")
    if sts is not None:
        name, service = sts["metadata"]["name"], sts["spec"].get("serviceName")
        if f".{service}.${{POD_NAMESPACE}}.svc.${{CLUSTER_DOMAIN}}" not in config:
            found.append(f"no route to <pod>.{service}.${{POD_NAMESPACE}}.svc.${{CLUSTER_DOMAIN}} (the headless Service)")
        if f"(?<replica>{name}-" not in config:
            found.append(f"the header's replica is not matched as a pod of StatefulSet {name!r}")
    return found


def render_proxy_template(template: str, namespace: str = "default", domain: str = "cluster.local") -> str:
    """What the container's envsubst makes of the template (exactly these two names)."""
    return template.replace("${POD_NAMESPACE}", namespace).replace("${CLUSTER_DOMAIN}", domain)


def lint_proxy_deployment(dep: dict, cm: dict) -> list[str]:
    found: list[str] = []
    spec = pod_spec(dep) or {}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    cm_volumes = [n for n, v in volumes.items() if (v.get("configMap") or {}).get("name") == cm["metadata"]["name"]]
    if not cm_volumes:
        found.append(f"does not mount ConfigMap {cm['metadata']['name']}")
    for c in spec.get("containers") or []:
        command = " ".join(c.get("command") or []) + " " + " ".join(c.get("args") or [])
        for key in cm.get("data") or {}:
            if key not in command:
                found.append(f"container {c['name']!r}: its command does not use {key} of the ConfigMap")
        env = env_of(c)
        path = (((env.get("POD_NAMESPACE") or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if path != "metadata.namespace":
            found.append(f"container {c['name']!r}: POD_NAMESPACE does not come from metadata.namespace")
        if "CLUSTER_DOMAIN" not in env:
            found.append(f"container {c['name']!r}: CLUSTER_DOMAIN is not set")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = c.get(probe_name) or {}
            if not (probe.get("tcpSocket") or probe.get("grpc") or probe.get("httpGet")):
                found.append(f"container {c['name']!r}: no {probe_name}")
        mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
        if "/tmp" not in mounts:
            found.append(f"container {c['name']!r}: no writable /tmp (pid and temporary files, on a read-only root)")
    if (dep["spec"].get("replicas") or 1) < 2:
        found.append("fewer than 2 replicas")
    return found


def check_proxy(report: Report, context: dict) -> None:
    before = report.failed
    by_kind = context["by_kind"]
    sts = context.get("sts")
    deps = [d for d in by_kind.get("Deployment", []) if "nginx" in " ".join(c.get("image", "") for c in pod_spec(d)["containers"])]
    if not report.check(len(deps) == 1, "proxy", f"expected one nginx Deployment, found {len(deps)}"):
        return
    dep = deps[0]
    cm_names = [(v.get("configMap") or {}).get("name") for v in pod_spec(dep).get("volumes") or []]
    cms = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] in cm_names]
    if not report.check(len(cms) == 1, where(dep), f"mounts {len(cms)} ConfigMaps of deploy/k8s, expected 1"):
        return
    cm = cms[0]
    config = "\n".join((cm.get("data") or {}).values())
    report.findings(f"lint {where(cm)}", lint_proxy_config(config, sts))
    report.findings(f"lint {where(dep)}", lint_proxy_deployment(dep, cm))
    context["proxy_cm"] = cm
    services = [s for s in by_kind.get("Service", []) if selects(s["spec"].get("selector") or {}, pod_spec_labels(dep))]
    if report.check(len(services) == 1, where(dep), f"{len(services)} Services select the proxy, expected 1"):
        svc = services[0]["spec"]
        report.check(svc.get("type", "ClusterIP") == "ClusterIP", where(services[0]), "is not ClusterIP")
        report.check(
            any(p.get("port") == 8080 and p.get("targetPort") == "grpc" for p in svc.get("ports") or []),
            where(services[0]),
            "has no port 8080 → grpc",
        )
    report.section(
        "proxy",
        f"{where(cm)} resolves through kube-dns with a short valid=, maps $http_x_backprop_model to "
        f"<pod>.{(sts or {}).get('spec', {}).get('serviceName')}.<namespace>, keeps every directive of "
        f"deploy/nginx/backprop-server.conf; {where(dep)} renders it with its namespace, "
        "2+ replicas, its Service on 8080",
        before,
    )


def pod_spec_labels(doc: dict) -> dict:
    return ((doc["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}


# ------------------------------------------------------------------------------ nginx -t


def nginx_binary() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)  # type: ignore[return-value]


def for_local_nginx(text: str, version: tuple[int, int, int], tmp: Path) -> str:
    """The configuration as a local `nginx -t` can read it: paths under `tmp`, and for an
    nginx older than the images' (Debian 12 has 1.22) the newer syntax spelled the old
    way. Addresses that only exist in a cluster or a compose network become loopback."""
    text = text.replace("/tmp/", f"{tmp}/")
    text = re.sub(r"resolver kube-dns\.kube-system\.svc\.\S+", "resolver 127.0.0.1", text)
    text = re.sub(r"resolver 127\.0\.0\.11\b", "resolver 127.0.0.1", text)
    if version < (1, 25, 1):
        text = re.sub(r"listen (\S+);\s*\n(\s*)http2 on;", r"listen \1 http2;", text)
    if version < (1, 27, 3):
        text = re.sub(r" resolve;", ";", text)
        text = re.sub(r"^\s*zone \S+( \S+)?;\n", "", text, flags=re.M)
        text = re.sub(r"server backprop-(\d+):", r"server 127.0.0.1:", text)
    return text


def nginx_test(binary: str, files: dict[str, str], main: str) -> tuple[bool, str]:
    version = nginx_version(binary)
    with tempfile.TemporaryDirectory(prefix="check-manifests-nginx.") as d:
        tmp = Path(d)
        for name, text in files.items():
            (tmp / name).write_text(for_local_nginx(text, version, tmp))
        r = subprocess.run([binary, "-e", "stderr", "-t", "-p", str(tmp), "-c", str(tmp / main)], capture_output=True, text=True)
        return r.returncode == 0, (r.stdout + r.stderr).strip().replace(str(tmp), "<dir>")


def check_nginx_syntax(report: Report, context: dict) -> None:
    before = report.failed
    binary = nginx_binary()
    if binary is None:
        report.section("nginx -t", "skipped (no nginx on this machine; tests/run_all.sh installs it)", before)
        return
    version = ".".join(map(str, nginx_version(binary)))
    cm = context.get("proxy_cm")
    if cm is not None:
        data = cm["data"]
        # The container renders the template to /tmp/backprop.conf, which nginx.conf
        # includes (for_local_nginx moves /tmp into the scratch directory).
        files = {"nginx.conf": data["nginx.conf"], "backprop.conf": render_proxy_template(data["backprop.conf.template"])}
        ok, out = nginx_test(binary, files, "nginx.conf")
        report.check(ok, f"nginx {version} -t of {where(cm)}", out)
    compose_files = {
        "nginx.conf": (COMPOSE_DIR / "nginx.conf").read_text(),
        "backprop-upstreams.conf": (COMPOSE_DIR / "backprop-upstreams.conf").read_text(),
        "backprop-routing.conf": (REPO / "deploy/nginx/backprop-routing.conf").read_text(),
        "backprop-server.conf": NGINX_REFERENCE.read_text(),
        "backprop-replicas.map": (REPO / "deploy/nginx/backprop-replicas.map").read_text(),
    }
    ok, out = nginx_test(binary, compose_files, "nginx.conf")
    report.check(ok, f"nginx {version} -t of deploy/compose's proxy", out)
    report.section("nginx -t", f"nginx {version} accepts the Kubernetes proxy's and compose's configurations", before)


# ------------------------------------------------------------------------------ compose


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate_defaults(text: str) -> str:
    """`${VAR:-default}` and `${VAR-default}` as compose reads them with VAR unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", text)


def seconds(duration: Any) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    if not m or not any(m.groups()):
        return -1
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def lint_compose(doc: dict, base: Path) -> list[str]:
    found: list[str] = []
    services = doc.get("services") or {}
    declared_volumes = set((doc.get("volumes") or {}).keys())
    replicas = sorted(n for n in services if re.fullmatch(r"backprop-\d+", n))
    if replicas != ["backprop-0", "backprop-1", "backprop-2"]:
        found.append(f"replica services are {replicas}, not backprop-0, backprop-1 and backprop-2")
    state_sources: dict[str, str] = {}
    for name in replicas:
        s = services[name]
        env = compose_env(s)
        if env.get("BACKPROP_REPLICA_ID") != name:
            found.append(f"{name}: BACKPROP_REPLICA_ID is {env.get('BACKPROP_REPLICA_ID')!r}, not its service name")
        state_dir = env.get("BACKPROP_STATE_DIR", "/var/lib/backprop")
        mounts = [str(v).split(":") for v in s.get("volumes") or [] if isinstance(v, str)]
        sources = [m[0] for m in mounts if len(m) >= 2 and m[1] == state_dir]
        if len(sources) != 1 or sources[0] not in declared_volumes:
            found.append(f"{name}: {state_dir} is not one named volume declared under `volumes:` ({sources})")
        else:
            if sources[0] in state_sources:
                found.append(f"{name}: shares volume {sources[0]} with {state_sources[sources[0]]}")
            state_sources[sources[0]] = name
        build = s.get("build") or {}
        context = (base / str(build.get("context", "."))).resolve()
        if not build or not (context / str(build.get("dockerfile", "Dockerfile"))).is_file():
            found.append(f"{name}: does not build docker/Dockerfile ({build})")
        grace = env.get("BACKPROP_SHUTDOWN_GRACE_SECS", "10")
        if not seconds(s.get("stop_grace_period", "10s")) > int(grace):
            found.append(f"{name}: stop_grace_period {s.get('stop_grace_period')} does not exceed BACKPROP_SHUTDOWN_GRACE_SECS {grace}")
    for name, s in services.items():
        if s.get("read_only") is not True:
            found.append(f"{name}: read_only is not true")
        if "ALL" not in (s.get("cap_drop") or []):
            found.append(f"{name}: cap_drop does not include ALL")
        if s.get("cap_add"):
            found.append(f"{name}: cap_add {s['cap_add']}")
        if "no-new-privileges:true" not in (s.get("security_opt") or []):
            found.append(f"{name}: security_opt lacks no-new-privileges:true")
        if s.get("privileged") is True:
            found.append(f"{name}: privileged")
        for key in ("network_mode", "pid", "ipc"):
            if str(s.get(key, "")) == "host":
                found.append(f"{name}: {key}: host")
        if not (s.get("healthcheck") or {}).get("test"):
            found.append(f"{name}: no healthcheck")
        image = str(s.get("image", ""))
        if "build" not in s:
            problem = image_problem(image)
            if problem:
                found.append(f"{name}: {problem}")
        for v in s.get("volumes") or []:
            src = str(v).split(":")[0]
            if src.startswith((".", "/")) and not (base / src).exists():
                found.append(f"{name}: mounts {src}, which does not exist")
        for p in s.get("ports") or []:
            bound = interpolate_defaults(str(p))
            if not bound.startswith("127.0.0.1:"):
                found.append(f"{name}: port {p} is not on 127.0.0.1 by default")
    proxies = [n for n in services if n not in replicas]
    if len(proxies) != 1:
        found.append(f"expected one proxy service beside the replicas, found {proxies}")
    else:
        proxy = services[proxies[0]]
        ports = [interpolate_defaults(str(p)) for p in proxy.get("ports") or []]
        if "127.0.0.1:8080:8080" not in ports:
            found.append(f"{proxies[0]}: not published on 127.0.0.1:8080 by default ({proxy.get('ports')})")
        mounted = {Path(str(v).split(":")[1]).name: (base / str(v).split(":")[0]) for v in proxy.get("volumes") or [] if ":" in str(v)}
        upstreams = mounted.get("backprop-upstreams.conf")
        replicas_map = mounted.get("backprop-replicas.map")
        if upstreams is None or replicas_map is None or not upstreams.is_file() or not replicas_map.is_file():
            found.append(f"{proxies[0]}: backprop-upstreams.conf and backprop-replicas.map are not both mounted")
        else:
            up = upstreams.read_text()
            mp = nginx_directives(replicas_map.read_text())
            for name in replicas:
                block = re.search(r"upstream " + re.escape(name) + r" \{(.*?)\}", up, re.S)
                if not block or f"server {name}:50051" not in block.group(1):
                    found.append(f"backprop-upstreams.conf: no `upstream {name}` with `server {name}:50051`")
                if f"{name} {name}" not in mp:
                    found.append(f"backprop-replicas.map: no `{name} {name};`")
            any_block = re.search(r"upstream backprop_any \{(.*?)\}", up, re.S)
            if not any_block or not all(f"server {n}:50051" in any_block.group(1) for n in replicas):
                found.append("backprop-upstreams.conf: backprop_any does not hold every replica")
    return found


def check_compose(report: Report) -> dict:
    before = report.failed
    try:
        doc = load_yaml_documents(COMPOSE)[0]
    except yaml.YAMLError as e:
        report.check(False, "deploy/compose/compose.yaml", f"is not YAML: {e}")
        return {}
    report.findings("lint deploy/compose/compose.yaml", lint_compose(doc, COMPOSE_DIR))
    report.section(
        "compose",
        f"{len(doc.get('services') or {})} services: backprop-0..2 each with BACKPROP_REPLICA_ID = its "
        "name and its own volume, built from docker/Dockerfile; all read_only, cap_drop ALL, "
        "no-new-privileges, health-checked; the proxy on 127.0.0.1:8080 with upstreams for each replica",
        before,
    )
    return doc


# ------------------------------------------------------------------------------ self-test


def _container(sts: dict) -> dict:
    return backprop_container(pod_spec(sts))  # type: ignore[return-value]


def _env(sts: dict, name: str) -> dict:
    return next(e for e in _container(sts)["env"] if e["name"] == name)


def _replace(d: dict, new: dict) -> None:
    d.clear()
    d.update(new)


def _drop(d: dict, *keys: str) -> None:
    for k in keys:
        d.pop(k, None)


def self_test(report: Report, context: dict, compose: dict) -> None:
    """Each broken copy must be reported, with a finding that names what broke."""
    before = report.failed
    sts = context.get("sts")
    cm = context.get("proxy_cm")
    if sts is None or cm is None or not compose:
        report.check(False, "lint self-test", "needs the StatefulSet, the proxy ConfigMap and the compose file")
        return
    sts_lint: Callable[[dict], list[str]] = lambda d: lint_object(d) + lint_statefulset(d)  # noqa: E731
    sts_cases: list[tuple[str, Callable[[dict], None], str]] = [
        ("runAsNonRoot removed", lambda d: (_drop(pod_spec(d)["securityContext"], "runAsNonRoot"), _drop(_container(d)["securityContext"], "runAsNonRoot")), "runAsNonRoot"),
        ("privileged added", lambda d: _container(d)["securityContext"].update(privileged=True), "privileged"),
        ("grace period too short", lambda d: pod_spec(d).update(terminationGracePeriodSeconds=int(_env(d, "BACKPROP_SHUTDOWN_GRACE_SECS")["value"])), "terminationGracePeriodSeconds"),
        ("grace period unset (30 s) under a 45 s drain", lambda d: (_drop(pod_spec(d), "terminationGracePeriodSeconds"), _env(d, "BACKPROP_SHUTDOWN_GRACE_SECS").update(value="45")), "terminationGracePeriodSeconds"),
        ("writable root filesystem", lambda d: _container(d)["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
        ("allowPrivilegeEscalation removed", lambda d: _drop(_container(d)["securityContext"], "allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
        ("capabilities kept", lambda d: _container(d)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}), "drop ALL"),
        ("seccomp removed", lambda d: (_drop(pod_spec(d)["securityContext"], "seccompProfile"), _drop(_container(d)["securityContext"], "seccompProfile")), "seccompProfile"),
        ("memory limit removed", lambda d: _drop(_container(d)["resources"]["limits"], "memory"), "limits.memory"),
        ("cpu request removed", lambda d: _drop(_container(d)["resources"]["requests"], "cpu"), "requests.cpu"),
        ("a sidecar on :latest", lambda d: pod_spec(d)["containers"].append({**copy.deepcopy(_container(d)), "name": "sidecar", "image": "docker.io/library/busybox:latest"}), "latest"),
        ("an untagged sidecar", lambda d: pod_spec(d)["containers"].append({**copy.deepcopy(_container(d)), "name": "sidecar", "image": "busybox"}), "no tag"),
        ("hostNetwork", lambda d: pod_spec(d).update(hostNetwork=True), "hostNetwork"),
        ("hostPID", lambda d: pod_spec(d).update(hostPID=True), "hostPID"),
        ("service account token mounted", lambda d: _drop(pod_spec(d), "automountServiceAccountToken"), "automountServiceAccountToken"),
        ("readiness over TCP", lambda d: _container(d).update(readinessProbe={"tcpSocket": {"port": GRPC_PORT}}), "readinessProbe is not a grpc probe"),
        ("readiness on another port", lambda d: _container(d)["readinessProbe"]["grpc"].update(port=9090), "readinessProbe asks port"),
        ("readiness about the whole server", lambda d: _container(d)["readinessProbe"]["grpc"].update(service=""), "readinessProbe asks about service"),
        ("BACKPROP_REPLICA_ID a fixed value", lambda d: _replace(_env(d, "BACKPROP_REPLICA_ID"), {"name": "BACKPROP_REPLICA_ID", "value": "backprop-0"}), "metadata.name"),
        ("BACKPROP_REPLICA_ID from the namespace", lambda d: _env(d, "BACKPROP_REPLICA_ID")["valueFrom"]["fieldRef"].update(fieldPath="metadata.namespace"), "metadata.name"),
        ("state dir on the root filesystem", lambda d: _env(d, "BACKPROP_STATE_DIR").update(value="/srv/backprop"), "volumeClaimTemplate"),
    ]
    cm_lint: Callable[[dict], list[str]] = lambda d: lint_proxy_config("\n".join(d["data"].values()), sts)  # noqa: E731
    cm_cases: list[tuple[str, Callable[[dict], None], str]] = [
        ("resolver removed", lambda d: d["data"].update({k: re.sub(r"(?m)^\s*resolver .*$", "", v) for k, v in d["data"].items()}), "resolver"),
        ("resolver without valid=", lambda d: d["data"].update({k: re.sub(r" valid=\d+s", "", v) for k, v in d["data"].items()}), "resolver"),
        ("routed on another header", lambda d: d["data"].update({k: v.replace("$http_x_backprop_model", "$http_x_model") for k, v in d["data"].items()}), "http_x_backprop_model"),
        ("body size limit back to 1 MiB", lambda d: d["data"].update({k: v.replace("client_max_body_size 0;", "") for k, v in d["data"].items()}), "client_max_body_size"),
        ("no UNAVAILABLE page", lambda d: d["data"].update({k: v.replace("add_header grpc-status 14 always;", "") for k, v in d["data"].items()}), "grpc-status 14"),
    ]
    compose_lint: Callable[[dict], list[str]] = lambda d: lint_compose(d, COMPOSE_DIR)  # noqa: E731
    compose_cases: list[tuple[str, Callable[[dict], None], str]] = [
        ("backprop-1 named backprop-0", lambda d: d["services"]["backprop-1"].update(environment={**compose_env(d["services"]["backprop-1"]), "BACKPROP_REPLICA_ID": "backprop-0"}), "BACKPROP_REPLICA_ID"),
        ("backprop-2 on backprop-1's volume", lambda d: d["services"]["backprop-2"].update(volumes=["backprop-1-state:/var/lib/backprop"]), "shares volume"),
        ("a replica fewer", lambda d: d["services"].pop("backprop-2"), "replica services"),
        ("proxy on every interface", lambda d: d["services"]["proxy"].update(ports=["8080:8080"]), "127.0.0.1"),
        ("writable proxy", lambda d: d["services"]["proxy"].pop("read_only"), "read_only"),
    ]
    n = 0
    for lint, original, cases in ((sts_lint, sts, sts_cases), (cm_lint, cm, cm_cases), (compose_lint, compose, compose_cases)):
        if not report.check(
            not lint(copy.deepcopy(original)),
            f"lint self-test on {where(original) if 'kind' in original else 'compose.yaml'}",
            "skipped: the original itself has findings (above)",
        ):
            continue
        for name, mutate, expected in cases:
            broken = copy.deepcopy(original)
            try:
                mutate(broken)
                found = lint(broken)
            except Exception as e:  # a mutation that no longer fits the manifests
                report.check(False, f"lint self-test: {name}", f"could not break the copy: {e!r}")
                continue
            report.check(
                any(expected in f for f in found),
                f"lint self-test: {name}",
                f"not reported (expected a finding mentioning {expected!r}; got {found})",
            )
            n += 1
    report.section("lint self-test", f"{n} broken copies (StatefulSet, proxy ConfigMap, compose), each reported", before)


# ------------------------------------------------------------------------------ main


def main() -> int:
    no_network()
    report = Report()
    objects, _ = load_manifests(report)
    check_schemas(report, objects)
    context = check_workloads(report, objects)
    check_proxy(report, context)
    check_nginx_syntax(report, context)
    compose = check_compose(report)
    self_test(report, context, compose)
    if report.failures:
        print(f"\n{len(report.failures)} failure(s):")
        for f in report.failures:
            print(f"  - {f}")
    print(f"check_manifests: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

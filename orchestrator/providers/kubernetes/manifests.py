"""Kubernetes manifests of a deployment, as plain dicts: pure functions, no API calls.

One namespace per deployment (or the site's shared namespace); every compute instance
(node, index) is a single-replica StatefulSet with a headless governing Service, plus a
Service for its exposed ports, an optional Ingress, a Secret with the deployment's SSH
public key and a claim of the CVMFS CSI driver; every volume instance is a
PersistentVolumeClaim. Everything carries the ``orchestrator/*`` labels (our tag keys
mapped to Kubernetes label keys; a value no label can hold goes, exact, into an
annotation).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from orchestrator.providers.base import TAG_DEPLOYMENT, TAG_INDEX, TAG_KIND, TAG_NODE

#: our tag keys -> Kubernetes label keys (a prefix and a name: valid qualified names)
LABEL_KEYS = {TAG_DEPLOYMENT: "orchestrator/deployment", TAG_NODE: "orchestrator/node",
              TAG_INDEX: "orchestrator/index", TAG_KIND: "orchestrator/kind"}
MANAGED_BY = {"app.kubernetes.io/managed-by": "tosca-orchestrator"}
TAGS_ANNOTATION = "orchestrator/tags"
INSTANCE_LABEL = "orchestrator/instance"
CONTAINER = "node"
#: PID 1 of an OS image (one that has no service of its own): stay up, stop on TERM
KEEP_ALIVE = ("/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME_LIMIT = 52  # StatefulSet names: the controller-revision-hash label adds 11 characters


@dataclass(frozen=True)
class Settings:
    """Site policy (sites.yaml ``options``) that shapes the manifests."""

    shared_namespace: str | None = None
    service_type: str = "ClusterIP"
    public_service_type: str = "LoadBalancer"
    ingress_domain: str | None = None
    ingress_class: str | None = None
    rdma_resource: str | None = None
    rdma_count: int = 1
    cvmfs_storage_class: str = "cvmfs"
    storage_class: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpu_product_label: str = "nvidia.com/gpu.product"
    image_pull_policy: str = "IfNotPresent"
    keep_alive_command: tuple[str, ...] = KEEP_ALIVE


@dataclass(frozen=True)
class Container:
    """What the provider resolved for one compute instance."""

    image: str
    keep_alive: bool = True  # an OS image: run KEEP_ALIVE instead of its entrypoint
    cpus: float | None = None
    memory_mib: float | None = None
    gpus: int = 0
    gpu_products: tuple[str, ...] = ()  # values of the GPU product node label
    infiniband: bool = False
    volumes: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (claim, mount)


# --- names and labels ---------------------------------------------------------------------

def dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text; a hash keeps distinct texts distinct."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-") or "x"
    if cleaned == text and len(cleaned) <= limit:
        return cleaned
    digest = hashlib.sha1(str(text).encode()).hexdigest()[:6]
    return f"{cleaned[:limit - 7].rstrip('-')}-{digest}"


def namespace_name(deployment: str, settings: Settings) -> str:
    return settings.shared_namespace or dns_label(f"orch-{deployment[:16]}")


def instance_name(deployment: str, node: str, index: int, settings: Settings) -> str:
    """Name of an instance's objects: ``<node>-<index>`` (prefixed in a shared namespace)."""
    prefix = f"o{deployment[:8]}-" if settings.shared_namespace else ""
    name = dns_label(f"{prefix}{node}-{index}", _NAME_LIMIT)
    return name if name[0].isalpha() else dns_label(f"n{name}", _NAME_LIMIT)  # Service names


def label_value(value: str) -> str:
    """The value itself when it is a valid label value, else a hashed, sanitised form."""
    value = str(value)
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")[:54].rstrip("-_.")
    return f"{cleaned or 'x'}-{hashlib.sha1(value.encode()).hexdigest()[:8]}"


def labels(tags: dict, instance: str | None = None) -> dict:
    """Our labels; ``instance`` names the instance whose objects are removed together."""
    found = {**MANAGED_BY, **{LABEL_KEYS[k]: label_value(v) for k, v in tags.items()
                              if k in LABEL_KEYS}}
    if instance:
        found[INSTANCE_LABEL] = instance
    return found


def selector(tags: dict) -> str:
    """A label selector string matching the given tags."""
    return ",".join(f"{LABEL_KEYS[k]}={label_value(v)}" for k, v in tags.items()
                    if k in LABEL_KEYS)


def tags_of(obj: dict) -> dict:
    """Our exact tags back from an object: its labels, corrected by the annotation that
    holds the values a label could not carry as they are."""
    meta = obj.get("metadata") or {}
    reverse = {v: k for k, v in LABEL_KEYS.items()}
    found = {reverse[k]: str(v) for k, v in (meta.get("labels") or {}).items() if k in reverse}
    try:
        exact = json.loads((meta.get("annotations") or {}).get(TAGS_ANNOTATION) or "{}")
    except ValueError:
        exact = {}
    found.update({k: str(v) for k, v in exact.items() if k in LABEL_KEYS})
    return found


def metadata(name: str, namespace: str | None, tags: dict, instance: str | None = None
             ) -> dict:
    meta: dict = {"name": name, "labels": labels(tags, instance)}
    exact = {k: v for k, v in tags.items() if k in LABEL_KEYS and label_value(v) != v}
    if exact:  # values no label can hold as they are
        meta["annotations"] = {TAGS_ANNOTATION: json.dumps(exact, sort_keys=True)}
    if namespace:
        meta["namespace"] = namespace
    return meta


# --- objects ------------------------------------------------------------------------------

def namespace_manifest(namespace: str, deployment: str) -> dict:
    tags = {TAG_DEPLOYMENT: deployment}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(namespace, None, tags)}


def quantity_mib(mib: float) -> str:
    return f"{int(round(float(mib)))}Mi"


def quantity_cpu(cpus: float) -> str:
    milli = int(round(float(cpus) * 1000))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def resources(container: Container, settings: Settings) -> dict:
    requests: dict = {}
    if container.cpus:
        requests["cpu"] = quantity_cpu(container.cpus)
    if container.memory_mib:
        requests["memory"] = quantity_mib(container.memory_mib)
    limits = dict(requests)
    if container.gpus:  # extended resources: limits only (requests default to them)
        limits[settings.gpu_resource] = str(int(container.gpus))
    if container.infiniband and settings.rdma_resource:
        limits[settings.rdma_resource] = str(int(settings.rdma_count))
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def gpu_placement(container: Container, settings: Settings) -> dict:
    """nodeSelector (one product) or node affinity (several) on the GPU product label."""
    products = sorted(set(container.gpu_products))
    if not container.gpus or not products:
        return {}
    if len(products) == 1:
        return {"nodeSelector": {settings.gpu_product_label: label_value(products[0])}}
    term = {"matchExpressions": [{"key": settings.gpu_product_label, "operator": "In",
                                  "values": [label_value(p) for p in products]}]}
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}}


def expand_ports(ports) -> list[tuple[int, str]]:
    """(port, PROTOCOL) of the node's ports; ranges expanded (100 ports at most)."""
    found: list[tuple[int, str]] = []
    for entry in ports or ():
        entry = entry if isinstance(entry, dict) else {"port": entry}
        try:
            first = int(entry["port"])
            last = int(entry.get("end_port") or first)
        except (KeyError, TypeError, ValueError):
            continue
        proto = str(entry.get("protocol") or "tcp").upper()
        proto = proto if proto in ("TCP", "UDP", "SCTP") else "TCP"
        for port in range(first, min(last, first + 99) + 1):
            if (port, proto) not in found:
                found.append((port, proto))
    return found


def source_ranges(ports) -> list[str]:
    ranges = {str(p.get("remote_cidr")) for p in ports or () if isinstance(p, dict)
              and p.get("remote_cidr")}
    return [] if not ranges or "0.0.0.0/0" in ranges else sorted(ranges)


def statefulset_manifest(spec, namespace: str, name: str, container: Container,
                         settings: Settings) -> dict:
    props = spec.properties or {}
    main: dict = {"name": CONTAINER, "image": container.image,
                  "imagePullPolicy": settings.image_pull_policy,
                  "env": [{"name": "ORCHESTRATOR_NODE", "value": spec.node},
                          {"name": "ORCHESTRATOR_INDEX", "value": str(spec.index)}]}
    if container.keep_alive:
        main["command"] = list(settings.keep_alive_command)
    ports = expand_ports(props.get("ports"))
    if ports:
        main["ports"] = [{"containerPort": p, "protocol": proto} for p, proto in ports]
    limits = resources(container, settings)
    if limits:
        main["resources"] = limits
    mounts, volumes = [], []
    if props.get("ssh_public_key"):
        volumes.append({"name": "ssh", "secret": {"secretName": f"{name}-ssh",
                                                  "defaultMode": 0o600, "optional": False}})
        mounts.append({"name": "ssh", "mountPath": "/root/.ssh", "readOnly": True})
    repositories = cvmfs_repositories(props)
    if repositories:
        volumes.append({"name": "cvmfs", "persistentVolumeClaim": {
            "claimName": f"{name}-cvmfs", "readOnly": True}})
        mounts += [{"name": "cvmfs", "mountPath": f"/cvmfs/{repo}", "subPath": repo,
                    "readOnly": True, "mountPropagation": "HostToContainer"}
                   for repo in repositories]
    for claim, mount in container.volumes:
        volumes.append({"name": volume_entry(claim), "persistentVolumeClaim":
                        {"claimName": claim}})
        mounts.append({"name": volume_entry(claim), "mountPath": mount})
    if mounts:
        main["volumeMounts"] = mounts
    pod: dict = {"containers": [main], "terminationGracePeriodSeconds": 10,
                 **gpu_placement(container, settings)}
    if volumes:
        pod["volumes"] = volumes
    meta = metadata(name, namespace, spec.tags, name)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"replicas": 1, "serviceName": name,
                     "selector": {"matchLabels": labels(spec.tags, name)},
                     "template": {"metadata": {"labels": labels(spec.tags, name),
                                               **({"annotations": dict(meta["annotations"])}
                                                  if meta.get("annotations") else {})},
                                  "spec": pod}}}


def volume_entry(claim: str) -> str:
    return dns_label(f"v-{claim}")


def headless_service_manifest(spec, namespace: str, name: str) -> dict:
    ports = expand_ports((spec.properties or {}).get("ports"))
    service = {"clusterIP": "None", "selector": labels(spec.tags),
               "publishNotReadyAddresses": True}
    if ports:  # a headless Service without ports is valid: it gives the pod its DNS name
        service["ports"] = service_ports(ports)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(name, namespace, spec.tags, name), "spec": service}


def service_ports(ports: list[tuple[int, str]]) -> list[dict]:
    return [{"name": f"{proto.lower()}-{port}", "port": port, "targetPort": port,
             "protocol": proto} for port, proto in ports]


def ports_service_type(spec, settings: Settings) -> str:
    public = bool((spec.properties or {}).get("public_ip"))
    return settings.public_service_type if public else settings.service_type


def ports_service_manifest(spec, namespace: str, name: str, settings: Settings) -> dict | None:
    props = spec.properties or {}
    ports = expand_ports(props.get("ports"))
    if not ports:
        return None
    kind = ports_service_type(spec, settings)
    service: dict = {"type": kind, "selector": labels(spec.tags), "ports": service_ports(ports)}
    ranges = source_ranges(props.get("ports"))
    if kind == "LoadBalancer" and ranges:
        service["loadBalancerSourceRanges"] = ranges
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(f"{name}-ports", namespace, spec.tags, name), "spec": service}


def ingress_host(namespace: str, name: str, port: int, domain: str) -> str:
    return f"{dns_label(f'{name}-{port}-{namespace}')}.{domain}"


def ingress_manifest(spec, namespace: str, name: str, settings: Settings) -> dict | None:
    """HTTP routes to the node's TCP ports (not 22) when the site has an ingress domain
    and the node asks for a public address."""
    props = spec.properties or {}
    ports = [p for p, proto in expand_ports(props.get("ports")) if proto == "TCP" and p != 22]
    if not (settings.ingress_domain and props.get("public_ip") and ports):
        return None
    rules = [{"host": ingress_host(namespace, name, port, settings.ingress_domain),
              "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                  "name": f"{name}-ports", "port": {"number": port}}}}]}} for port in ports]
    body: dict = {"rules": rules}
    if settings.ingress_class:
        body["ingressClassName"] = settings.ingress_class
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": metadata(name, namespace, spec.tags, name), "spec": body}


def ssh_secret_manifest(spec, namespace: str, name: str) -> dict | None:
    key = str((spec.properties or {}).get("ssh_public_key") or "").strip()
    if not key:
        return None
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(f"{name}-ssh", namespace, spec.tags, name),
            "stringData": {"authorized_keys": f"{key}\n"}}


def cvmfs_repositories(props: dict) -> list[str]:
    cvmfs = ((props.get("requirements") or {}).get("cvmfs") or {})
    return [str(r) for r in cvmfs.get("repositories") or ()]


def cvmfs_claim_manifest(spec, namespace: str, name: str, settings: Settings) -> dict | None:
    """A claim of the CVMFS CSI driver's automount volume (the size is ignored by it)."""
    repositories = cvmfs_repositories(spec.properties or {})
    if not repositories:
        return None
    meta = metadata(f"{name}-cvmfs", namespace, spec.tags, name)
    meta.setdefault("annotations", {})["orchestrator/cvmfs-repositories"] = ",".join(
        repositories)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
            "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName":
                     settings.cvmfs_storage_class, "resources": {"requests": {"storage": "1"}}}}


def volume_claim_manifest(spec, namespace: str, name: str, settings: Settings) -> dict:
    props = spec.properties or {}
    size = props.get("size_gib") or 1
    body: dict = {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": f"{int(size)}Gi"}}}
    storage_class = props.get("volume_type") or settings.storage_class
    if storage_class:
        body["storageClassName"] = str(storage_class)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(name, namespace, spec.tags, name), "spec": body}


def compute_manifests(spec, namespace: str, container: Container,
                      settings: Settings) -> list[dict]:
    """Every object of one compute instance, the StatefulSet last (its existence says the
    others were made: a create interrupted before it is simply redone)."""
    name = instance_name(spec.deployment, spec.node, spec.index, settings)
    made = [ssh_secret_manifest(spec, namespace, name),
            cvmfs_claim_manifest(spec, namespace, name, settings),
            headless_service_manifest(spec, namespace, name),
            ports_service_manifest(spec, namespace, name, settings),
            ingress_manifest(spec, namespace, name, settings),
            statefulset_manifest(spec, namespace, name, container, settings)]
    return [m for m in made if m is not None]

"""Object rules of the Kubernetes API for the loopback test server (kube_apiserver.py):
paths, verbs, label selectors, Status replies, validation, defaults and scheduling
arithmetic. Test code only."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

#: resource -> (apiVersion, Kind, namespaced)
KINDS = {"namespaces": ("v1", "Namespace", False), "nodes": ("v1", "Node", False),
         "pods": ("v1", "Pod", True), "services": ("v1", "Service", True),
         "secrets": ("v1", "Secret", True), "events": ("v1", "Event", True),
         "persistentvolumeclaims": ("v1", "PersistentVolumeClaim", True),
         "statefulsets": ("apps/v1", "StatefulSet", True),
         "ingresses": ("networking.k8s.io/v1", "Ingress", True)}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6,
             "G": 1e9, "T": 1e12, "m": 1e-3}


def node(name: str, cpus: str = "8", memory: str = "32Gi", gpus: int = 0,
         gpu_product: str | None = None, labels: dict | None = None, **extra) -> dict:
    """A Node object with this allocatable capacity."""
    allocatable = {"cpu": cpus, "memory": memory, "pods": "110", **extra}
    address = f"192.0.2.{sum(name.encode()) % 200 + 10}"
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    all_labels = {"kubernetes.io/hostname": name, **(labels or {})}
    if gpu_product:
        all_labels["nvidia.com/gpu.product"] = gpu_product
    return {"metadata": {"name": name, "labels": all_labels},
            "status": {"allocatable": allocatable, "capacity": dict(allocatable),
                       "addresses": [{"type": "InternalIP", "address": address}]}}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def route(path: str) -> tuple[str, str | None, str | None] | None:
    """(resource, namespace, name) of an API path; None when it names nothing we serve."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in KINDS or KINDS[rest[0]][0] != group or len(rest) > 2:
        return None
    if namespace is not None and not KINDS[rest[0]][2]:
        return None
    return rest[0], namespace, rest[1] if len(rest) > 1 else None


def verb(method: str, name: str | None, query: dict) -> str:
    if method == "GET":
        return "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def qualified(resource: str) -> str:
    group = KINDS[resource][0].rpartition("/")[0]
    return f"{resource}.{group}" if group else resource


def with_kind(resource: str, obj: dict | None) -> dict | None:
    if obj is not None:
        obj["apiVersion"], obj["kind"] = KINDS[resource][0], KINDS[resource][1]
    return obj


# --- Status replies -----------------------------------------------------------------------

def status(code: int, reason: str, message: str, name: str | None = None,
           kind: str | None = None, causes: list | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if name or kind or causes:
        details = {"name": name, "kind": kind}
        if kind in KINDS:
            details["group"] = KINDS[kind][0].rpartition("/")[0]
        if causes:
            details["causes"] = causes
        body["details"] = {k: v for k, v in details.items() if v is not None}
    return body


def not_found(resource: str, name: str) -> dict:
    return status(404, "NotFound", f'{qualified(resource)} "{name}" not found', name, resource)


def forbidden(user: str, verb_name: str, resource: str, ns: str | None, name: str | None
              ) -> dict:
    group = KINDS[resource][0].rpartition("/")[0]
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    subject = f'{qualified(resource)} "{name}"' if name else qualified(resource)
    return status(403, "Forbidden", f'{subject} is forbidden: User "{user}" cannot '
                  f'{verb_name} resource "{resource}" in API group "{group}" {where}',
                  name, resource)


def invalid_status(resource: str, name: str, causes: list[dict]) -> dict:
    kind = KINDS[resource][1] + (f".{KINDS[resource][0].rpartition('/')[0]}"
                                 if "/" in KINDS[resource][0] else "")
    text = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    return status(422, "Invalid", f'{kind} "{name}" is invalid: {text}', name, resource,
                  causes)


# --- validation and defaults ----------------------------------------------------------------

def _cause(field: str, message: str) -> dict:
    return {"reason": "FieldValueInvalid", "message": message, "field": field}


def _label_causes(where: str, found: dict | None) -> list[dict]:
    causes = []
    for key, value in (found or {}).items():
        prefix, _, name = key.rpartition("/")
        if not _LABEL_NAME.match(name) or len(name) > 63 or (prefix and not
                                                              _SUBDOMAIN.match(prefix)):
            causes.append(_cause(where, f'Invalid value: "{key}": name part must consist of '
                                 "alphanumeric characters, '-', '_' or '.'"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(_cause(f"{where}", f'Invalid value: "{value}": a valid label must '
                                 "be an empty string or consist of alphanumeric characters, "
                                 "'-', '_' or '.', and must start and end with an alphanumeric "
                                 "character"))
    return causes


def invalid(resource: str, obj: dict) -> list[dict]:
    """Causes of a 422 reply (empty when the object is acceptable)."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    pattern = _DNS_1035 if resource == "services" else _DNS_LABEL \
        if resource == "namespaces" else _SUBDOMAIN
    causes = [] if pattern.match(name) and len(name) <= 253 else [
        _cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 name '
               "must consist of lower case alphanumeric characters or '-'")]
    causes += _label_causes("metadata.labels", meta.get("labels"))
    spec = obj.get("spec") or {}
    if resource == "statefulsets":
        template = spec.get("template") or {}
        selected = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not selected or any(labels.get(k) != v for k, v in selected.items()):
            causes.append(_cause("spec.template.metadata.labels", "Invalid value: `selector` "
                                 "does not match template `labels`"))
        causes += _label_causes("spec.template.metadata.labels", labels)
        for i, container in enumerate((template.get("spec") or {}).get("containers") or [None]):
            if not container or not container.get("name") or not container.get("image"):
                causes.append(_cause(f"spec.template.spec.containers[{i}]",
                                     "Required value: name and image"))
    if resource == "services":
        names = [p.get("name") for p in spec.get("ports") or ()]
        if len(names) != len(set(names)):
            causes.append(_cause("spec.ports", "Duplicate value: port names"))
        if spec.get("clusterIP") == "None" and spec.get("type") in ("NodePort", "LoadBalancer"):
            causes.append(_cause("spec.clusterIP", "Invalid value: may not be None for "
                                 f"{spec.get('type')}"))
        if spec.get("type") in ("NodePort", "LoadBalancer") and not spec.get("ports"):
            causes.append(_cause("spec.ports", "Required value"))
    if resource == "persistentvolumeclaims":
        if not spec.get("accessModes"):
            causes.append(_cause("spec.accessModes", "Required value: at least 1 access mode"))
        if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
            causes.append(_cause("spec.resources[storage]", "Required value"))
    return causes


def defaults(resource: str, obj: dict, store: dict) -> dict:
    """What the API server fills in on create."""
    meta = obj.setdefault("metadata", {})
    meta.setdefault("annotations", {})
    meta.setdefault("labels", {})
    if resource == "statefulsets":
        meta["generation"] = 1
        obj["status"] = {"replicas": 0}
    elif resource == "namespaces":
        obj["status"] = {"phase": "Active"}
    elif resource == "persistentvolumeclaims":
        obj["status"] = {"phase": "Pending"}
    elif resource == "pods":
        obj["status"] = {"phase": "Pending"}
    elif resource == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        taken = len([k for k in store if k[0] == "services"])
        if spec.get("clusterIP") != "None":
            spec["clusterIP"] = f"10.96.{taken // 250 % 250}.{taken % 250 + 1}"
        if spec["type"] in ("NodePort", "LoadBalancer"):
            used = {p.get("nodePort") for (r, _, _), s in store.items() if r == "services"
                    for p in s["spec"].get("ports") or ()}
            free = (p for p in range(30000, 32768) if p not in used)
            for port in spec.get("ports") or ():
                port.setdefault("nodePort", next(free))
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": f"198.18.0.{taken % 250 + 1}"}]}
                         if spec["type"] == "LoadBalancer" else {}}
    else:
        obj.setdefault("status", {})
    return obj


# --- selectors and scheduling -----------------------------------------------------------------

def matches(obj: dict, selector: str | None) -> bool:
    """Does the object's labels satisfy a label selector (=, ==, !=, in, notin, exists)?"""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in re.findall(r"(?:[^,(]|\([^)]*\))+", selector or ""):
        term = term.strip()
        found = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$", term)
        if found:
            values = {v.strip() for v in found[3].split(",")}
            if (labels.get(found[1]) in values) != (found[2] == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term and term not in labels:
            return False
    return True


def quantity(text) -> float:
    found = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text).strip())
    return float(found[1]) * _SUFFIXES.get(found[2], 1.0) if found else 0.0


def pod_requests(pod: dict) -> dict[str, float]:
    wanted: dict[str, float] = {}
    for container in pod["spec"].get("containers") or ():
        res = container.get("resources") or {}
        for key, value in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
            wanted[key] = wanted.get(key, 0.0) + quantity(value)
    return wanted


def free_resources(node: dict, pods: list[dict]) -> dict[str, float]:
    free = {k: quantity(v) for k, v in node["status"]["allocatable"].items()}
    for pod in pods:
        for key, value in pod_requests(pod).items():
            free[key] = free.get(key, 0.0) - value
    return free


def node_selected(pod: dict, node: dict) -> bool:
    labels = node["metadata"].get("labels") or {}
    spec = pod["spec"]
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(all(
        (labels.get(e["key"]) in e.get("values", [])) == (e["operator"] == "In")
        for e in term.get("matchExpressions") or ()) for term in terms)


def condition(pod: dict, kind: str) -> str | None:
    return next((c.get("status") for c in pod["status"].get("conditions") or ()
                 if c.get("type") == kind), None)


def set_condition(pod: dict, kind: str, value: str, reason: str | None = None,
                  message: str | None = None) -> None:
    conditions = pod["status"].setdefault("conditions", [])
    current = next((c for c in conditions if c["type"] == kind), None)
    if current is None:
        current = {"type": kind}
        conditions.append(current)
    if current.get("status") != value:
        current["lastTransitionTime"] = now()
    current["status"] = value
    for key, text in (("reason", reason), ("message", message)):
        if text:
            current[key] = text
        else:
            current.pop(key, None)


SCHEDULER_TAIL = "preemption: 0/{n} nodes are available: {n} Preemption is not helpful " \
                 "for scheduling."


def schedule(ns: str, pod: dict, store: dict) -> tuple[dict | None, str]:
    """(node, "") where the pod fits, or (None, the scheduler's message) as kube-scheduler
    words it: per-reason node counts."""
    nodes = [o for (r, _, _), o in sorted(store.items()) if r == "nodes"]
    total = len(nodes)
    for volume in pod["spec"].get("volumes") or ():
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and ("persistentvolumeclaims", ns, claim) not in store:
            return None, (f'0/{total} nodes are available: persistentvolumeclaim "{claim}" '
                          "not found. " + SCHEDULER_TAIL.format(n=total))
    wanted = pod_requests(pod)
    reasons: dict[str, int] = {}
    for candidate in nodes:
        if not node_selected(pod, candidate):
            reason = "node(s) didn't match Pod's node affinity/selector"
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        free = free_resources(candidate, [o for (r, _, _), o in store.items()
                                          if r == "pods" and o["spec"].get("nodeName")
                                          == candidate["metadata"]["name"]])
        short = [k for k, v in wanted.items() if v > free.get(k, 0)]
        for key in short:
            reasons[f"Insufficient {key}"] = reasons.get(f"Insufficient {key}", 0) + 1
        if not short:
            return candidate, ""
    text = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return None, f"0/{total} nodes are available: {text}. " + SCHEDULER_TAIL.format(n=total)


def container_status(container: dict, fault: str | None, backed_off: bool) -> dict:
    """A containerStatuses entry: running, or stuck as the image fault says."""
    image = container["image"]
    base = {"name": container["name"], "image": image, "imageID": "", "ready": False,
            "restartCount": 0}
    if fault == "ImagePullBackOff":
        reason = "ImagePullBackOff" if backed_off else "ErrImagePull"
        return {**base, "state": {"waiting": {"reason": reason, "message":
                                              f'Back-off pulling image "{image}"'}}}
    if fault == "CrashLoopBackOff":
        return {**base, "restartCount": 3, "state": {"waiting": {
            "reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed "
            f"container={container['name']}"}}, "lastState": {"terminated": {
                "exitCode": 1, "reason": "Error"}}}
    return {**base, "ready": True, "started": True, "state": {"running": {
        "startedAt": now()}}, "imageID": f"{image}@sha256:{'0' * 64}",
        "containerID": f"containerd://{uuid.uuid5(uuid.NAMESPACE_URL, image).hex}"}

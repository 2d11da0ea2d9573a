"""From what the API server says to what the orchestrator understands: a pod's status
(phase, conditions, container states) becomes a Resource status with a clear fault, and
an API error reply (a ``Status`` object) becomes a ProviderError of the right kind."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    ERROR,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    TransientProviderError,
)

#: container waiting reasons that will not fix themselves
WAITING_ERRORS = ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                  "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
                  "RunContainerError")
#: scheduling messages that mean "wait": volumes still being provisioned or bound
SCHEDULING_WAITS = ("persistentvolumeclaim", "unbound immediate", "waiting for",
                    "volume binding", "being deleted")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def condition(pod: dict, kind: str) -> dict:
    return next((c for c in (pod.get("status") or {}).get("conditions") or ()
                 if c.get("type") == kind), {})


def container_problem(pod: dict) -> str | None:
    """``Reason: message`` of a container stuck for good (image, crash loop...)."""
    for state in (pod.get("status") or {}).get("containerStatuses") or ():
        waiting = (state.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_ERRORS:
            text = f"{reason}: {waiting.get('message') or 'no message'}"
            last = (state.get("lastState") or {}).get("terminated") or {}
            if reason == "CrashLoopBackOff" and last:
                text += (f" (last exit code {last.get('exitCode')}"
                         + (f", {last['reason']}" if last.get("reason") else "") + ")")
            return text
    return None


def scheduling_problem(pod: dict, now: datetime, grace_s: float) -> str | None:
    """The scheduler's reason when the pod cannot be placed (after ``grace_s`` seconds
    unscheduled, so a cluster autoscaler has time to add a node)."""
    scheduled = condition(pod, "PodScheduled")
    if scheduled.get("status") != "False" or scheduled.get("reason") != "Unschedulable":
        return None
    message = str(scheduled.get("message") or "unschedulable")
    if any(word in message.lower() for word in SCHEDULING_WAITS):
        return None
    since = parse_time(scheduled.get("lastTransitionTime"))
    if grace_s and since is not None and (now - since).total_seconds() < grace_s:
        return None
    return message


def pod_status(pod: dict | None, now: datetime | None = None, grace_s: float = 0.0
               ) -> tuple[str, str | None]:
    """(status, fault) of a compute instance from its pod (None: not made yet)."""
    if pod is None:
        return BUILDING, None
    now = now or datetime.now(timezone.utc)
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    name = meta.get("name", "?")
    if meta.get("deletionTimestamp"):
        return BUILDING, None  # being replaced (a template change): its successor comes
    phase = status.get("phase") or "Pending"
    if phase in ("Failed", "Succeeded"):
        why = status.get("message") or status.get("reason") or "its containers stopped"
        return ERROR, f"pod {name} {phase.lower()}: {why}"
    problem = container_problem(pod)
    if problem:
        return ERROR, f"pod {name}: {problem}"
    unschedulable = scheduling_problem(pod, now, grace_s)
    if unschedulable:
        return ERROR, f"pod {name} cannot be scheduled: {unschedulable}"
    if phase == "Running" and condition(pod, "Ready").get("status") == "True":
        return ACTIVE, None
    return BUILDING, None


def pod_attributes(pod: dict | None, namespace: str, name: str) -> dict:
    """Addresses and names of an instance, for outputs and the configurator."""
    pod_name = f"{name}-0"
    attributes = {"namespace": namespace, "statefulset": name, "pod_name": pod_name,
                  "dns_name": f"{pod_name}.{name}.{namespace}.svc"}
    if pod is not None:
        status, spec = pod.get("status") or {}, pod.get("spec") or {}
        for key, value in (("private_address", status.get("podIP")),
                           ("host_ip", status.get("hostIP")),
                           ("kubernetes_node", spec.get("nodeName"))):
            if value:
                attributes[key] = value
    return attributes


def service_endpoints(service: dict | None, host_ip: str | None) -> tuple[dict, str | None]:
    """({"8888/tcp": "address:port"}, public address) of an instance's ports Service."""
    if not service:
        return {}, None
    spec, status = service.get("spec") or {}, service.get("status") or {}
    ingress = ((status.get("loadBalancer") or {}).get("ingress") or [{}])[0]
    balancer = ingress.get("ip") or ingress.get("hostname")
    kind = spec.get("type") or "ClusterIP"
    found = {}
    for port in spec.get("ports") or ():
        key = f"{port['port']}/{str(port.get('protocol') or 'TCP').lower()}"
        if kind == "LoadBalancer" and balancer:
            found[key] = f"{balancer}:{port['port']}"
        elif kind in ("NodePort", "LoadBalancer") and port.get("nodePort") and host_ip:
            found[key] = f"{host_ip}:{port['nodePort']}"
        elif spec.get("clusterIP") and spec.get("clusterIP") != "None":
            found[key] = f"{spec['clusterIP']}:{port['port']}"
    public = balancer or (host_ip if kind == "NodePort" else None)
    return found, public


# --- API errors -----------------------------------------------------------------------------

def status_message(body) -> tuple[str, str, list]:
    """(message, reason, causes) of a ``Status`` reply body (any text when it is not one)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body or "{}")
    except ValueError:
        return str(body or "").strip()[:300], "", []
    if not isinstance(data, dict):
        return str(body)[:300], "", []
    causes = [f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")
              for c in (data.get("details") or {}).get("causes") or ()]
    return str(data.get("message") or "").strip(), str(data.get("reason") or ""), causes


def api_error(site: str, action: str, code: int | None, reason_phrase: str | None,
              body) -> ProviderError:
    """The ProviderError for an API server's error reply to ``action``."""
    message, reason, causes = status_message(body)
    message = message or reason_phrase or "no message"
    where = f"site '{site}': {action}"
    if code == 401:
        return ProviderError(f"{where}: the credentials were refused (401 Unauthorized: "
                             f"{message}); check the kubeconfig and context")
    if code == 403:
        if "being terminated" in message or "is terminating" in message:
            return TransientProviderError(f"{where}: {message}")
        if "exceeded quota" in message:
            return QuotaExceededError(f"{where}: {message}")
        return ProviderError(f"{where}: forbidden (403): {message}; the kubeconfig's user "
                             "needs this permission (RBAC)")
    if code == 404:
        return NotFoundError(f"{where}: not found: {message}")
    if code == 409:
        return TransientProviderError(f"{where}: conflict (409): {message}")
    if code == 422:
        detail = f" ({'; '.join(causes)})" if causes and not all(c in message for c in causes) \
            else ""
        return ProviderError(f"{where}: refused as invalid (422): {message}{detail}")
    if code in (429,) or (code or 0) >= 500 or code in (None, 0):
        return TransientProviderError(f"{where}: {code or 'no reply'} "
                                      f"{reason_phrase or reason}: {message}")
    return ProviderError(f"{where}: {code} {reason or reason_phrase}: {message}")

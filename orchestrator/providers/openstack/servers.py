"""Nova servers as the orchestrator sees them: the tags (server metadata, plus a Nova tag
naming the deployment so one list call finds a deployment's servers), the status
mapping (ERROR carries Nova's fault message) and the attributes Ansible and outputs use
(private/public address, ssh_host/ssh_port/ssh_user)."""
from __future__ import annotations

import re

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    TAG_DEPLOYMENT,
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
    Resource,
)

#: server metadata key saying the server wants a floating IP
META_PUBLIC = "orchestrator-public-ip"
_NOVA_TAG_MAX = 60
_NAME = re.compile(r"[^A-Za-z0-9-]+")
_GONE = ("DELETED", "SOFT_DELETED")
#: states of a server that exists and is settled (any other state is still changing)
_SETTLED = ("ACTIVE", "SHUTOFF", "STOPPED", "PAUSED", "SUSPENDED", "RESCUE", "SHELVED",
            "SHELVED_OFFLOADED")


def deployment_tag(deployment: str) -> str:
    """The Nova tag of a deployment's servers (Nova tags hold 60 characters at most)."""
    tag = f"{TAG_DEPLOYMENT}={deployment}"
    if len(tag) <= _NOVA_TAG_MAX and "/" not in tag and "," not in tag:
        return tag
    import hashlib
    return f"orchestrator-d={hashlib.sha256(deployment.encode()).hexdigest()[:40]}"


def server_name(deployment: str, node: str, index: int) -> str:
    name = _NAME.sub("-", f"{node}-{index}-{deployment[:8]}").strip("-")
    return name[:63]


def server_tags(server) -> dict:
    meta = dict(getattr(server, "metadata", None) or {})
    return {k: str(v) for k, v in meta.items()
            if k in (TAG_DEPLOYMENT, TAG_NODE, TAG_INDEX, TAG_KIND)}


def wants_public_ip(server) -> bool:
    return str((getattr(server, "metadata", None) or {}).get(META_PUBLIC, "")) == "1"


def addresses(server) -> tuple[str | None, str | None, list[str]]:
    """(first fixed IPv4 address, first floating address, network names)."""
    private = public = None
    networks = []
    for network, entries in (getattr(server, "addresses", None) or {}).items():
        networks.append(network)
        for entry in entries or ():
            kind = entry.get("OS-EXT-IPS:type")
            if entry.get("version", 4) != 4:
                continue
            if kind == "floating":
                public = public or entry.get("addr")
            else:
                private = private or entry.get("addr")
    return private, public, networks


def fault_of(server) -> str:
    fault = getattr(server, "fault", None) or {}
    message = fault.get("message") if isinstance(fault, dict) else str(fault)
    code = fault.get("code") if isinstance(fault, dict) else None
    text = message or "Nova reported ERROR without a fault message"
    return f"{text} (code {code})" if code else text


def building_for(server) -> float:
    """Seconds since the server was created (0 when Nova does not say)."""
    from datetime import datetime, timezone

    created = getattr(server, "created_at", None)
    try:
        since = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - since).total_seconds()


def to_resource(server, ssh_user: str, floating: str | None = None,
                boot_timeout: float | None = None) -> Resource:
    """A Resource for a Nova server; ``floating`` is its floating address when known.
    A server that asked for a public IP is ``building`` until it has one; one still in
    BUILD after ``boot_timeout`` seconds is an error (Nova can lose a request)."""
    status = str(getattr(server, "status", "") or "").upper()
    private, public, networks = addresses(server)
    public = floating or public
    tags = server_tags(server)
    flavor = getattr(server, "flavor", None) or {}
    attributes = {
        "private_address": private, "public_address": public,
        "ssh_host": public, "ssh_port": 22, "ssh_user": ssh_user,
        "server_name": getattr(server, "name", None),
        "flavor": flavor.get("original_name") or flavor.get("name") or flavor.get("id"),
        "image": (getattr(server, "image", None) or {}).get("id"),
        "networks": networks, "status": status,
    }
    if status in _GONE:
        return Resource(server.id, "compute", DELETED, tags, attributes)
    if status == "ERROR":
        return Resource(server.id, "compute", ERROR, tags, attributes, fault_of(server))
    if status == "BUILD" and boot_timeout and building_for(server) > boot_timeout:
        task = getattr(server, "task_state", None)
        return Resource(server.id, "compute", ERROR, tags, attributes,
                        f"still building {boot_timeout:g}s after it was created"
                        + (f" (Nova task state: {task})" if task else ""))
    if status not in _SETTLED or (wants_public_ip(server) and not public) or not private:
        return Resource(server.id, "compute", BUILDING, tags, attributes)
    return Resource(server.id, "compute", ACTIVE, tags, attributes)

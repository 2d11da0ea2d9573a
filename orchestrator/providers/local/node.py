"""How a local node is made: names, labels, the ``run`` arguments and the start script,
and how the engine's listings turn into Resources."""
from __future__ import annotations

import re
import shlex
import socket
from typing import Any

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    ERROR,
    TAG_DEPLOYMENT,
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
    Resource,
    ResourceSpec,
)

LABELS = (TAG_DEPLOYMENT, TAG_NODE, TAG_INDEX, TAG_KIND)
CA_PATH = "/etc/ssl/certs/orchestrator-host-ca.crt"

#: PID 1 of every node: authorise the key, make host keys, run sshd. An image without
#: sshd (a pulled debian:bookworm) gets openssh-server, python3 and sudo from apt first.
START_SCRIPT = r"""set -e
if [ ! -x /usr/sbin/sshd ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server python3 sudo >/dev/null
fi
mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh
if [ -n "$ORCH_SSH_KEY" ]; then
  printf '%s\n' "$ORCH_SSH_KEY" > /root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
fi
if [ -n "$ORCH_CA_BUNDLE" ]; then
  printf '[global]\ncert = %s\n' "$ORCH_CA_BUNDLE" > /etc/pip.conf
  grep -q '^PIP_CERT=' /etc/environment 2>/dev/null ||
    printf 'PIP_CERT=%s\nREQUESTS_CA_BUNDLE=%s\n' "$ORCH_CA_BUNDLE" "$ORCH_CA_BUNDLE" \
      >> /etc/environment
fi
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e
"""


def sanitise(text: str, limit: int = 63) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9_.-]+", "-", str(text)).strip("-.") or "x"
    return cleaned[:limit]


def hostname(node: str, index: int) -> str:
    return sanitise(re.sub(r"[^a-zA-Z0-9-]+", "-", f"{node}-{index}").lower())


def container_name(deployment: str, node: str, index: int) -> str:
    return sanitise(f"orch-{deployment[:8]}-{node}-{index}", 128)


def volume_name(deployment: str, node: str, index: int) -> str:
    return sanitise(f"orch-{deployment[:8]}-{node}-{index}", 128)


def network_name(deployment: str) -> str:
    return sanitise(f"orch-{deployment[:12]}")


def label_args(tags: dict) -> list[str]:
    args: list[str] = []
    for key in LABELS:
        if key in tags:
            args += ["--label", f"{key}={tags[key]}"]
    return args


def run_args(spec: ResourceSpec, image: str, network: str, flavor: Any | None,
             ulimits: tuple[str, ...], ca_bundle: str | None, gpus: bool,
             limits: bool) -> list[str]:
    """The ``run`` arguments of a compute node (without the engine itself)."""
    props = spec.properties or {}
    args = ["run", "-d", "--name", container_name(spec.deployment, spec.node, spec.index),
            "--hostname", hostname(spec.node, spec.index), "--network", network,
            *label_args(spec.tags), "-p", "127.0.0.1::22/tcp"]
    for limit in ulimits:
        args += ["--ulimit", limit]
    for port, proto in published_ports(props.get("ports")):
        args += ["-p", f"127.0.0.1::{port}/{proto}"]
    for volume in props.get("volumes") or ():
        source = volume_name(spec.deployment, volume, spec.index)
        args += ["-v", f"{source}:{mount_point(volume, props)}"]
    if props.get("ssh_public_key"):
        args += ["-e", f"ORCH_SSH_KEY={str(props['ssh_public_key']).strip()}"]
    if ca_bundle:
        args += ["-v", f"{ca_bundle}:{CA_PATH}:ro", "-e", f"ORCH_CA_BUNDLE={CA_PATH}",
                 "-e", f"PIP_CERT={CA_PATH}", "-e", f"REQUESTS_CA_BUNDLE={CA_PATH}"]
    if gpus:
        args += ["--device", "nvidia.com/gpu=all"]
    if limits and flavor is not None:
        if flavor.cpus:
            args += ["--cpus", f"{float(flavor.cpus):g}"]
        if flavor.memory_mib:
            args += ["--memory", f"{int(flavor.memory_mib)}m"]
    return args + ["--entrypoint", "/bin/sh", image, "-c", START_SCRIPT]


def mount_point(volume: str, props: dict) -> str:
    locations = props.get("volume_locations") or {}
    location = locations.get(volume) if isinstance(locations, dict) else None
    return str(location) if location else f"/mnt/{sanitise(volume)}"


def published_ports(ports: Any) -> list[tuple[int, str]]:
    """(port, protocol) of the node's ports, without 22/tcp (always published)."""
    found: list[tuple[int, str]] = []
    for entry in ports or ():
        if isinstance(entry, dict):
            port, proto = entry.get("port"), str(entry.get("protocol") or "tcp").lower()
        else:
            port, proto = entry, "tcp"
        try:
            port = int(port)
        except (TypeError, ValueError):
            continue
        proto = proto if proto in ("tcp", "udp", "sctp") else "tcp"
        if (port, proto) != (22, "tcp") and (port, proto) not in found:
            found.append((port, proto))
    return found


# --- listings -> Resources ---------------------------------------------------------------

def labels_of(entry: dict) -> dict:
    labels = entry.get("Labels") or {}
    if isinstance(labels, str):  # docker: "k=v,k=v"
        labels = dict(p.split("=", 1) for p in labels.split(",") if "=" in p)
    return {k: str(v) for k, v in labels.items() if k in LABELS}


def port_map(entry: dict) -> dict[str, str]:
    """{"22/tcp": "127.0.0.1:40022", ...} from a ps entry (podman list or docker text)."""
    ports = entry.get("Ports") or []
    found: dict[str, str] = {}
    if isinstance(ports, str):  # docker: "127.0.0.1:32768->22/tcp, ..."
        for part in ports.split(","):
            match = re.match(r"\s*([\d.]+):(\d+)->(\d+)/(\w+)", part)
            if match:
                found[f"{match[3]}/{match[4]}"] = f"{match[1]}:{match[2]}"
        return found
    for port in ports:
        count = int(port.get("range") or 1)
        for offset in range(count):
            key = f"{int(port['container_port']) + offset}/{port.get('protocol', 'tcp')}"
            found[key] = f"{port.get('host_ip') or '127.0.0.1'}:{int(port['host_port']) + offset}"
    return found


def container_state(entry: dict) -> str:
    state = entry.get("State") or ""
    return (state.get("Status", "") if isinstance(state, dict) else str(state)).lower()


#: SSH options for reaching local nodes. Their traffic never leaves this machine, so the
#: post-quantum hybrid key exchange OpenSSH prefers (sntrup761x25519, about 0.1 s of CPU on
#: each side per connection, which adds up over a cluster on a small machine) buys nothing
#: here: curve25519 alone. A site's ``ssh_options`` replace them.
SSH_OPTIONS = {"KexAlgorithms": "curve25519-sha256"}


def ssh_port(endpoints: dict) -> int | None:
    """The host port published for the node's sshd (``port_map`` of its container)."""
    ssh = endpoints.get("22/tcp", "")
    return int(ssh.rsplit(":", 1)[1]) if ssh else None


def compute_resource(entry: dict, extra: dict | None, reachable: bool,
                     ssh_options: dict | None = None) -> Resource:
    """A Resource of a container from its ps entry (``extra``: attributes from inspect)."""
    endpoints = port_map(entry)
    names = entry.get("Names") or []
    name = names[0] if isinstance(names, list) and names else str(names)
    attributes = {"container_id": entry.get("Id") or entry.get("ID"), "container_name": name,
                  "public_address": "127.0.0.1", "ssh_host": "127.0.0.1",
                  "ssh_port": ssh_port(endpoints),
                  "ssh_user": "root", "endpoints": endpoints,
                  "ssh_options": dict(SSH_OPTIONS if ssh_options is None else ssh_options),
                  **(extra or {})}
    state = container_state(entry)
    if state in ("exited", "dead", "stopped", "removing") or state.startswith("exited"):
        code = entry.get("ExitCode")
        status, fault = ERROR, f"container {name} exited ({state}" + (
            f", exit code {code})" if code is not None else ")")
    elif state in ("running", "up") or state.startswith("up"):
        status, fault = (ACTIVE if reachable else BUILDING), None
    else:
        status, fault = BUILDING, None
    return Resource(provider_id=attributes["container_id"], kind="compute", status=status,
                    tags=labels_of(entry), attributes=attributes, fault=fault)


def sshd_answers(port: int | None, timeout: float = 1.0) -> bool:
    """True when something on 127.0.0.1:PORT sends an SSH-2.0 banner."""
    if not port:
        return False
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


def quoted(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)

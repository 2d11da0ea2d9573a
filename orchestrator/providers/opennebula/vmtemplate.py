"""The OpenNebula VM template a compute node becomes, in OpenNebula's template syntax
(``KEY = "value"``, vectors ``DISK = [ IMAGE_ID = "7", SIZE = "20480" ]``).

What goes in: capacity (CPU, VCPU, MEMORY) from the flavor, the boot DISK, one NIC per
network, GPUs and InfiniBand as PCI devices, CONTEXT (the deployment's SSH key, network
configuration, a start script) and the labels that let ``find`` and a retried ``create``
recognise our VMs (USER_TEMPLATE attributes ``ORCHESTRATOR_*``, ``LABELS`` and the name).
"""
from __future__ import annotations

import base64
import math
import re

from orchestrator.providers.base import (
    TAG_DEPLOYMENT,
    TAG_INDEX,
    TAG_KIND,
    TAG_NODE,
    Flavor,
    ProviderError,
    ResourceSpec,
)

#: tag key -> the USER_TEMPLATE attribute that carries it (OpenNebula attribute names are
#: upper case letters, digits and underscores)
LABEL_ATTRIBUTES = {TAG_DEPLOYMENT: "ORCHESTRATOR_DEPLOYMENT", TAG_NODE: "ORCHESTRATOR_NODE",
                    TAG_INDEX: "ORCHESTRATOR_INDEX", TAG_KIND: "ORCHESTRATOR_KIND"}
#: PCI ids of GPUs by vendor when the site maps no model: any 3D controller of the vendor
DEFAULT_GPU_PCI = {"nvidia": {"vendor": "10de", "class": "0302"}}

START_SCRIPT = """#!/bin/sh
# Prepared by the orchestrator: Ansible needs python3 on the node.
if ! command -v python3 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
  elif command -v dnf >/dev/null 2>&1; then dnf install -y -q python3
  elif command -v yum >/dev/null 2>&1; then yum install -y -q python3
  elif command -v zypper >/dev/null 2>&1; then zypper -n install python3
  fi
fi
"""


def vm_name(deployment: str, node: str, index: int) -> str:
    return f"orch-{deployment[:8]}-{node}-{index}"


def quote(value: object) -> str:
    """A value in OpenNebula's template syntax: double-quoted, with \\ and " escaped."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def attribute_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(key)).upper()
    if not name or not name[0].isalpha():
        raise ProviderError(f"{key!r} cannot be an OpenNebula template attribute name")
    return name


def render(attributes: list[tuple[str, object]]) -> str:
    """Template text from (NAME, value) pairs; a dict value is a vector attribute."""
    lines = []
    for name, value in attributes:
        if isinstance(value, dict):
            inner = ",\n  ".join(f"{attribute_name(k)} = {quote(v)}" for k, v in value.items()
                                 if v is not None)
            lines.append(f"{attribute_name(name)} = [\n  {inner} ]")
        elif value is not None:
            lines.append(f"{attribute_name(name)} = {quote(value)}")
    return "\n".join(lines) + "\n"


def labels(tags: dict) -> list[tuple[str, object]]:
    found = [(LABEL_ATTRIBUTES[key], value) for key, value in tags.items()
             if key in LABEL_ATTRIBUTES]
    return found + [("LABELS", f"orchestrator,orchestrator/{tags.get(TAG_DEPLOYMENT, '')}")]


def tags_of(user_template: dict) -> dict:
    """The orchestrator tags a VM's USER_TEMPLATE carries (empty when not ours)."""
    found = {key: str(user_template[attr]) for key, attr in LABEL_ATTRIBUTES.items()
             if user_template.get(attr) not in (None, "")}
    return found if TAG_DEPLOYMENT in found else {}


def pci_for_gpus(gpus: dict, mapping: dict, site: str) -> list[dict]:
    """One PCI device per GPU, from the site's model -> PCI ids mapping (``gpu_pci``)."""
    count = int(gpus.get("count") or 0)
    if count <= 0:
        return []
    model, vendor = gpus.get("model"), (gpus.get("vendor") or "NVIDIA")
    ids = None
    if model:
        ids = next((v for k, v in (mapping or {}).items() if k.lower() == str(model).lower()),
                   None)
    if ids is None and not model:
        ids = DEFAULT_GPU_PCI.get(str(vendor).lower())
    if ids is None:
        known = ", ".join(sorted(mapping or {})) or "none"
        raise ProviderError(f"site '{site}': no PCI ids for GPU model {model or vendor} "
                            f"(options.gpu_pci maps: {known})")
    device = {"VENDOR": ids.get("vendor"), "DEVICE": ids.get("device"),
              "CLASS": ids.get("class")}
    if gpus.get("mig_profile"):
        device["PROFILE"] = gpus["mig_profile"]
    return [dict(device) for _ in range(count)]


def capacity(flavor: Flavor, cpu_ratio: float) -> list[tuple[str, object]]:
    vcpus = max(1, math.ceil(float(flavor.cpus)))
    cpu = max(0.01, round(float(flavor.cpus) * cpu_ratio, 2))
    return [("CPU", f"{cpu:g}"), ("VCPU", vcpus), ("MEMORY", int(flavor.memory_mib))]


def context(spec: ResourceSpec, options: dict) -> dict:
    script = START_SCRIPT + (str(options.get("start_script") or "") + "\n"
                             if options.get("start_script") else "")
    found = {"NETWORK": "YES", "SET_HOSTNAME": f"{spec.node}-{spec.index}",
             "SSH_PUBLIC_KEY": (spec.properties or {}).get("ssh_public_key") or None,
             "START_SCRIPT_BASE64": base64.b64encode(script.encode()).decode()}
    user = options.get("ssh_user") or "root"
    if user != "root":
        found["USERNAME"] = user  # one-context creates the user with the key
    return found


def vm_template(spec: ResourceSpec, flavor: Flavor, image_id: int | None, disk_gib: float,
                network_ids: list[int], pci: list[dict], options: dict) -> str:
    """The whole template for ``one.vm.allocate``."""
    attributes: list[tuple[str, object]] = [
        ("NAME", vm_name(spec.deployment, spec.node, spec.index)),
        *capacity(flavor, float(options.get("cpu_ratio", 1.0))),
    ]
    if image_id is not None:
        disk = {"IMAGE_ID": image_id}
        if disk_gib:
            disk["SIZE"] = int(float(disk_gib) * 1024)
        attributes.append(("DISK", disk))
    attributes += [("NIC", {"NETWORK_ID": network}) for network in network_ids]
    attributes += [("PCI", device) for device in pci]
    attributes.append(("CONTEXT", context(spec, options)))
    for key, value in (options.get("template") or {}).items():  # site extras (SCHED_...)
        attributes.append((key, value))
    attributes += labels(spec.tags)
    return render(attributes)

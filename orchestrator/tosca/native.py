"""Native implementations: operations of our own playbooks for node types of other
catalogues (``playbooks/native.yaml``).

A type's implementation is chosen, not hard-wired: ``native`` (the default) takes the
operations listed for the node's type, or for the nearest of its ancestors, from that
file; ``upstream`` keeps the type's own (its playbooks and Ansible roles). The choice
made for each node is recorded on it and shown in the plan.
"""
from __future__ import annotations

import functools
import os

from orchestrator import resources
from orchestrator.diagnostics import Diagnostics
from orchestrator.tosca.yamlsource import load_yaml, read_text

NATIVE = "native"
UPSTREAM = "upstream"
CHOICES = (NATIVE, UPSTREAM)
FILE = "native.yaml"


@functools.lru_cache(maxsize=4)
def _table(folder: str) -> dict:
    path = f"{folder}/{FILE}"
    if not os.path.isfile(path):
        return {}
    diagnostics = Diagnostics()
    text = read_text(path, diagnostics)
    data = load_yaml(text, path, diagnostics) if text is not None else None
    if diagnostics.has_errors or not isinstance(data, dict):
        problems = "; ".join(d.render() for d in diagnostics.errors) or "not a mapping"
        raise ValueError(f"{path}: {problems}")
    types = data.get("node_types") or {}
    return {name: body.get("interfaces") or {} for name, body in types.items()
            if isinstance(body, dict)}


def table() -> dict:
    """Node type -> interfaces of its native implementation (read once per folder)."""
    return _table(str(resources.playbooks_dir()))


def native_interfaces(chain: tuple[str, ...], listed: dict) -> tuple[str, dict] | None:
    """(the type it is listed for, its interfaces) for a node type's ``chain`` (the type
    and its ancestors, nearest first) in ``listed`` (``table()``), or None."""
    for type_name in chain:
        if type_name in listed:
            return type_name, listed[type_name]
    return None


def overlay(upstream: dict, native: dict) -> dict:
    """The type's interfaces with each interface the native implementation lists replaced
    by its operations (the interface's type is kept, so its other operations stay known)."""
    result = dict(upstream)
    for name, body in native.items():
        base = upstream.get(name)
        kept = {"type": base["type"]} if isinstance(base, dict) and "type" in base else {}
        result[name] = {**kept, **(body if isinstance(body, dict) else {})}
    return result

"""Attributes that hold a secret, sealed at rest.

A software instance's attributes come from its playbooks (``set_stats``); the configurator
lists those that hold one of the operation's secrets under ``secret_attributes``. Before a
row is stored, their values (at the top level and under ``operation_outputs``) are
replaced by the mask and sealed together under ``sealed_attributes``; the run keeps the
real values in its own cache, and a run that resumes opens them again, so get_attribute
and get_operation_output still see what the playbook set. Nothing else ever opens them.
"""
from __future__ import annotations

from typing import Callable

from orchestrator.engine.outputs import SECRET_ATTRIBUTES
from orchestrator.tosca.secret import untaint

SEALED = "sealed_attributes"
OUTPUTS = "operation_outputs"


def seal_attributes(attributes: dict, seal: Callable[[dict], str] | None,
                    mask: str) -> dict:
    """The attributes to store: each secret one masked, their values sealed under
    ``sealed_attributes``; as given when none is secret or nothing can seal."""
    names = [n for n in attributes.get(SECRET_ATTRIBUTES) or () if isinstance(n, str)]
    if not names or seal is None:
        return attributes
    secret: dict = {"top": {}, OUTPUTS: {}}
    stored = dict(attributes)
    for name in names:
        if name in stored:
            secret["top"][name] = untaint(stored[name])
            stored[name] = mask
    outputs = {}
    for operation, values in (attributes.get(OUTPUTS) or {}).items():
        values = dict(values) if isinstance(values, dict) else values
        if isinstance(values, dict):
            for name in names:
                if name in values:
                    secret[OUTPUTS].setdefault(operation, {})[name] = untaint(values[name])
                    values[name] = mask
        outputs[operation] = values
    if OUTPUTS in attributes:
        stored[OUTPUTS] = outputs
    stored[SEALED] = seal(secret)
    return stored


def open_attributes(attributes: dict, open_: Callable[[str], dict] | None) -> dict:
    """The attributes with the sealed values put back (for the engine's own lookups)."""
    token = attributes.get(SEALED) if isinstance(attributes, dict) else None
    if not token or open_ is None:
        return attributes
    secret = open_(token) or {}
    opened = {k: v for k, v in attributes.items() if k != SEALED}
    opened.update(secret.get("top") or {})
    outputs = {op: dict(values) if isinstance(values, dict) else values
               for op, values in (attributes.get(OUTPUTS) or {}).items()}
    for operation, values in (secret.get(OUTPUTS) or {}).items():
        outputs.setdefault(operation, {}).update(values)
    if outputs:
        opened[OUTPUTS] = outputs
    return opened

"""The parsed entities of a template: inputs, node templates and their requirements."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.tosca.yamlsource import Mapping, where

HOSTED_ON = "tosca.relationships.HostedOn"
_EMPTY: dict = {}  # an empty mapping, never written to
_PLAIN = frozenset({str, int, float, bool, type(None)})  # values that evaluate to themselves


@dataclass
class InputDef:
    name: str
    schema: Mapping
    loc: Location
    value: Any = None
    provided: bool = False

    @property
    def description(self) -> str | None:
        text = self.schema.get("description")
        return text.strip() if isinstance(text, str) else None


@dataclass
class Requirement:
    name: str
    target: str | None
    capability: str | None
    relationship: str | None
    properties: dict = field(default_factory=dict)
    interfaces: dict = field(default_factory=dict)
    loc: Location = Location("")


@dataclass
class NodeTemplate:
    name: str
    type: str
    raw: Mapping
    loc: Location
    properties: dict = field(default_factory=dict)
    capabilities: dict = field(default_factory=dict)
    requirements: list[Requirement] = field(default_factory=list)
    interfaces: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    #: "native: <type>" when its operations come from playbooks/native.yaml
    implementation: str | None = None


def _mapping(data, key: str, diags: Diagnostics, node: str | None = None) -> Mapping:
    value = data.get(key) if isinstance(data, dict) else None
    if value is None:
        empty = Mapping()
        empty.loc = where(data, key)
        return empty
    if not isinstance(value, dict):
        diags.error("wrong-type", f"'{key}' must be a mapping", where(data, key), node=node)
        empty = Mapping()
        empty.loc = where(data, key)
        return empty
    return value

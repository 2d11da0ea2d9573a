"""The type registry: normative TOSCA types (from tosca-parser's definitions) plus
every type defined in the template and its imports, with inheritance resolved.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import toscaparser.elements

from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.tosca.yamlsource import Mapping, load_yaml, read_text, where

SECTIONS = {
    "node_types": "tosca.nodes.",
    "relationship_types": "tosca.relationships.",
    "capability_types": "tosca.capabilities.",
    "data_types": "tosca.datatypes.",
    "interface_types": "tosca.interfaces.",
    "artifact_types": "tosca.artifacts.",
    "group_types": "tosca.groups.",
    "policy_types": "tosca.policies.",
}

PRIMITIVE_TYPES = {
    "string", "integer", "float", "boolean", "timestamp", "null", "version", "range",
    "list", "map", "scalar-unit.size", "scalar-unit.time", "scalar-unit.frequency",
    "scalar-unit.bitrate", "any",
}

_EXTRA_SHORT = {"interface_types": ("tosca.interfaces.node.lifecycle.",
                                    "tosca.interfaces.relationship.")}

_NORMATIVE: list | None = None


def normative_documents() -> list[tuple[str, Mapping]]:
    """tosca-parser's normative type definitions, plus our supplement for 1.2/1.3."""
    global _NORMATIVE
    if _NORMATIVE is None:
        from orchestrator import resources

        diags = Diagnostics()
        files = [os.path.join(os.path.dirname(toscaparser.elements.__file__),
                              "TOSCA_definition.yaml")]
        supplement = resources.types_dir() / "normative" / "tosca_1_3_supplement.yaml"
        if supplement.is_file():
            files.append(str(supplement))
        docs = []
        for path in files:
            text = read_text(path, diags)
            data = load_yaml(text, path, diags) if text is not None else None
            if isinstance(data, Mapping):
                docs.append((path, data))
        _NORMATIVE = docs
    return _NORMATIVE


@dataclass(frozen=True)
class TypeDef:
    name: str
    section: str
    data: Mapping
    normative: bool

    @property
    def parent(self) -> str | None:
        parent = self.data.get("derived_from") if isinstance(self.data, dict) else None
        return parent if isinstance(parent, str) else None

    @property
    def loc(self) -> Location:
        return self.data.loc if isinstance(self.data, Mapping) else Location("")


class TypeRegistry:
    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics
        self.types: dict[str, dict[str, TypeDef]] = {s: {} for s in SECTIONS}
        self._chains: dict[tuple[str, str], tuple[str, ...]] = {}
        self._merged: dict[tuple, dict] = {}
        self._root_file: str | None = None
        self.broken: dict[tuple[str, str], str] = {}  # (section, type) -> unknown parent
        for _path, data in normative_documents():
            self.add_document(data, normative=True)

    # -- loading ---------------------------------------------------------------------------
    def add_document(self, data: Mapping, normative: bool = False, prefix: str | None = None):
        for section in SECTIONS:
            block = data.get(section)
            if block is None:
                continue
            if not isinstance(block, dict):
                self.diagnostics.error("wrong-type", f"'{section}' must be a mapping of types",
                                       where(data, section))
                continue
            for name, body in block.items():
                if not isinstance(name, str):
                    self.diagnostics.error("invalid-type-definition", "a type name must be a "
                                           "string", where(block, name))
                    continue
                if body is None:
                    body = Mapping()
                    body.loc = where(block, name)
                if not isinstance(body, dict):
                    self.diagnostics.error("invalid-type-definition",
                                           f"type '{name}' must be a mapping", where(block, name))
                    continue
                full = f"{prefix}:{name}" if prefix else name
                existing = self.types[section].get(full)
                if existing is not None and not existing.normative and existing.data != body:
                    self.diagnostics.warning(
                        "type-redefined",
                        f"type '{full}' is defined again; the first definition "
                        f"({existing.loc}) is kept", where(block, name))
                    continue
                if existing is not None and existing.normative and not normative:
                    if existing.data == body:
                        continue
                self.types[section][full] = TypeDef(full, section, body, normative)

    def check(self, root_file: str | None = None) -> None:
        """Report unknown parents and inheritance cycles once, for every type. A type of
        an imported file whose parent is unknown is a warning (tosca-parser and IM never
        look at types nobody uses; a real INDIGO file has one): it is kept in ``broken``
        and using it is an error (``broken_ancestor``)."""
        self._root_file = root_file
        for section, table in self.types.items():
            for name in list(table):
                self.chain(section, name, report=True)

    def broken_ancestor(self, section: str, name: str) -> tuple[str, str] | None:
        """(type, unknown parent) when ``name`` or one of its ancestors derives from an
        unknown type."""
        for ancestor in self.chain(section, name):
            parent = self.broken.get((section, ancestor))
            if parent is not None:
                return ancestor, parent
        return None

    # -- lookup ----------------------------------------------------------------------------
    def resolve(self, section: str, name) -> str | None:
        """Canonical name for ``name`` (accepting short names like ``Compute``)."""
        if not isinstance(name, str):
            return None
        table = self.types[section]
        if name in table:
            return name
        short = name[6:] if name.startswith("tosca:") else name
        for prefix in (SECTIONS[section],) + _EXTRA_SHORT.get(section, ()):
            if prefix + short in table:
                return prefix + short
        return None

    def get(self, section: str, name) -> TypeDef | None:
        canonical = self.resolve(section, name)
        return self.types[section][canonical] if canonical else None

    def suggest(self, section: str, name) -> str | None:
        return did_you_mean(name, self.types[section])

    def chain(self, section: str, name: str, report: bool = False) -> tuple[str, ...]:
        """``name`` and its ancestors, nearest first; stops at unknown parents and cycles."""
        key = (section, name)
        if key in self._chains and not report:
            return self._chains[key]
        names: list[str] = []
        current: str | None = self.resolve(section, name)
        while current is not None:
            if current in names:
                if report:
                    cycle = " -> ".join(names[names.index(current):] + [current])
                    self.diagnostics.error("type-cycle", f"type derives from itself: {cycle}",
                                           self.types[section][current].loc)
                break
            names.append(current)
            typedef = self.types[section][current]
            parent = typedef.parent
            if parent is None or (section == "data_types" and parent in PRIMITIVE_TYPES):
                break
            resolved = self.resolve(section, parent)
            if resolved is None and report:
                loc = where(typedef.data, "derived_from", typedef.loc)
                message = f"type '{current}' derives from unknown type '{parent}'"
                if self._root_file is not None and loc.file != self._root_file:
                    self.broken[(section, current)] = parent
                    self.diagnostics.warning("unknown-type", message + " (in an imported "
                                             "file; it cannot be used)", loc,
                                             hint=self.suggest(section, parent))
                else:
                    self.diagnostics.error("unknown-type", message, loc,
                                           hint=self.suggest(section, parent))
            current = resolved
        result = tuple(names)
        self._chains[key] = result
        return result

    def is_a(self, section: str, name, ancestor: str) -> bool:
        if not isinstance(name, str):
            return False
        target = self.resolve(section, ancestor) or ancestor
        return target in self.chain(section, name)

    # -- merged definitions along the inheritance chain --------------------------------------
    def merged(self, section: str, name: str, key: str) -> dict:
        """Merge a mapping-valued key (properties, attributes, capabilities, interfaces...)."""
        cache_key = (section, name, key)
        cached = self._merged.get(cache_key)
        if cached is not None:
            return cached
        result: dict = {}
        for type_name in reversed(self.chain(section, name)):
            block = self.types[section][type_name].data.get(key)
            if isinstance(block, dict):
                for item, body in block.items():
                    if isinstance(body, dict) and isinstance(result.get(item), dict) and \
                            key in ("capabilities", "interfaces"):
                        combined = Mapping(result[item])
                        combined.update(body)
                        combined.loc = body.loc if isinstance(body, Mapping) else Location("")
                        combined.key_locs = dict(getattr(body, "key_locs", {}))
                        result[item] = combined
                    else:
                        result[item] = body
        self._merged[cache_key] = result
        return result

    def properties(self, section: str, name: str) -> dict:
        return self.merged(section, name, "properties")

    def attributes(self, section: str, name: str) -> dict:
        return self.merged(section, name, "attributes")

    def capabilities(self, name: str) -> dict:
        """Capability name -> definition mapping (a bare type string becomes {type: ...})."""
        cache_key = ("node_types", name, "capabilities-normalised")
        cached = self._merged.get(cache_key)
        if cached is None:
            caps = self.merged("node_types", name, "capabilities")
            cached = {k: (v if isinstance(v, dict) else {"type": v}) for k, v in caps.items()}
            self._merged[cache_key] = cached
        return cached

    def requirements(self, name: str) -> dict:
        """Requirement name -> definition, parents first, children overriding."""
        cache_key = ("node_types", name, "requirements")
        if cache_key in self._merged:
            return self._merged[cache_key]
        result: dict = {}
        for type_name in reversed(self.chain("node_types", name)):
            block = self.types["node_types"][type_name].data.get("requirements")
            if not isinstance(block, list):
                continue
            for entry in block:
                if isinstance(entry, dict) and len(entry) == 1:
                    req_name, body = next(iter(entry.items()))
                    if isinstance(body, str):
                        body = {"capability": body}
                    if isinstance(body, dict):
                        result[req_name] = body
        self._merged[cache_key] = result
        return result

    def interfaces(self, section: str, name: str) -> dict:
        return self.merged(section, name, "interfaces")

    def interface_operations(self, interface_type: str) -> set[str]:
        """Operation names an interface type declares (1.0 flat form and 1.3 'operations')."""
        ops: set[str] = set()
        for type_name in self.chain("interface_types", interface_type):
            data = self.types["interface_types"][type_name].data
            for key, value in data.items():
                if key == "operations" and isinstance(value, dict):
                    ops.update(k for k in value if isinstance(k, str))
                elif key not in ("derived_from", "description", "version", "metadata",
                                 "inputs", "notifications", "type"):
                    ops.add(key)
        return ops

    def capability_offers(self, node_type: str, capability: str) -> str | None:
        """Name of a capability of ``node_type`` that is (or derives from) ``capability``."""
        wanted = self.resolve("capability_types", capability)
        for cap_name, cap_def in self.capabilities(node_type).items():
            if cap_name == capability:
                return cap_name
            cap_type = cap_def.get("type")
            if wanted and self.is_a("capability_types", cap_type, wanted):
                return cap_name
        return None

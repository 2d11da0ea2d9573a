"""Parsed, validated service templates.

``Template.build`` takes the loaded source documents and the input values and
produces node templates whose properties are evaluated and type-checked, with every
problem recorded as a Diagnostic pointing at file, line and column.
"""
from __future__ import annotations

from typing import Any

from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.tosca.entities import InputDef, NodeTemplate, _mapping
from orchestrator.tosca.evaluation import EvaluationMixin
from orchestrator.tosca.functions import Evaluator, Scope
from orchestrator.tosca.grammar import VERSION_URIS, canonical_version, check_grammar
from orchestrator.tosca import native
from orchestrator.tosca.implementations import check_implementations
from orchestrator.tosca.imports import SourceDoc
from orchestrator.tosca.ranges import check_ranges
from orchestrator.tosca.requirements import RequirementsMixin
from orchestrator.tosca.sections import SectionsMixin
from orchestrator.tosca.types import SECTIONS, TypeRegistry
from orchestrator.tosca.values import Checker
from orchestrator.tosca.yamlsource import Mapping, where

SUPPORTED_VERSIONS = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_1",
                      "tosca_simple_yaml_1_2", "tosca_simple_yaml_1_3")
TOP_LEVEL = {"tosca_definitions_version", "tosca_default_namespace", "template_name",
             "template_author", "template_version", "namespace", "metadata", "description",
             "dsl_definitions", "repositories", "imports", "topology_template", *SECTIONS}
TOPOLOGY_KEYS = {"description", "inputs", "node_templates", "relationship_templates", "groups",
                 "policies", "outputs", "substitution_mappings", "workflows"}
NODE_KEYS = {"type", "description", "metadata", "directives", "properties", "attributes",
             "requirements", "capabilities", "interfaces", "artifacts", "node_filter", "copy"}
INPUT_KEYS = {"type", "description", "required", "default", "status", "constraints",
              "key_schema", "entry_schema", "external-schema", "metadata", "value"}


class Template(RequirementsMixin, SectionsMixin, EvaluationMixin):
    def __init__(self, docs: list[SourceDoc], diagnostics: Diagnostics,
                 implementation: str = native.NATIVE, allow_local: bool = False):
        self.implementation = implementation
        self._native = native.table()  # read once per template, not per node
        self.allow_local = allow_local  # operations may name playbooks anywhere (local CLI)
        self.docs = docs
        self.diagnostics = diagnostics
        self.root = docs[0].data
        self.file = docs[0].name
        self.registry = TypeRegistry(diagnostics)
        self.version: str | None = None
        self.description: str | None = None
        self.metadata: dict = {}
        self.inputs: dict[str, InputDef] = {}
        self.nodes: dict[str, NodeTemplate] = {}
        self.relationship_templates: dict[str, Mapping] = {}
        self.groups: dict[str, dict] = {}
        self.policies: list[dict] = []
        self.outputs: dict[str, dict] = {}
        self._props: dict[tuple, Any] = {}
        self._in_progress: set = set()
        self._by_type: dict[str, list[str]] = {}
        self._cap_defs: dict[tuple[str, str], dict] = {}
        self._scopes: dict[str, Scope] = {}
        self._checkers: dict[str | None, Checker] = {}
        self.evaluator = Evaluator(self)

    # -- building ---------------------------------------------------------------------------
    def build(self, given_inputs: dict[str, tuple[Any, Location]]) -> "Template":
        self._check_header()
        for doc in self.docs:
            self.registry.add_document(doc.data, prefix=doc.namespace_prefix)
        self.registry.check(self.file)
        check_grammar(self.docs, self.registry, self.diagnostics)
        topology = _mapping(self.root, "topology_template", self.diagnostics)
        for key in topology:
            if key not in TOPOLOGY_KEYS:
                self.diagnostics.error("unknown-section", f"'{key}' is not a topology_template "
                                       "section", where(topology, key),
                                       hint=did_you_mean(key, TOPOLOGY_KEYS))
        self.description = topology.get("description") or self.root.get("description")
        self._read_inputs(_mapping(topology, "inputs", self.diagnostics), given_inputs)
        rel_templates = _mapping(topology, "relationship_templates", self.diagnostics)
        self.relationship_templates = dict(rel_templates)
        self._check_relationship_templates(rel_templates)
        nodes = _mapping(topology, "node_templates", self.diagnostics)
        for name, body in nodes.items():
            self._read_node(str(name), body, where(nodes, name))
        for node in self.nodes.values():
            self._read_requirements(node)
            self._check_occurrences(node)
        for node in self.nodes.values():
            self._evaluate_node(node)
        self._read_groups(_mapping(topology, "groups", self.diagnostics))
        self._read_policies(topology)
        self._read_outputs(_mapping(topology, "outputs", self.diagnostics))
        check_ranges(self)
        check_implementations(self)
        return self

    def _check_header(self) -> None:
        root = self.root
        version = canonical_version(root.get("tosca_definitions_version"))
        if version is None:
            self.diagnostics.error("missing-version", "tosca_definitions_version is missing "
                                   f"(one of {', '.join(SUPPORTED_VERSIONS)})",
                                   Location(self.file, 1, 1))
        elif version not in SUPPORTED_VERSIONS:
            self.diagnostics.error("unsupported-version", f"unsupported version {version!r}",
                                   where(root, "tosca_definitions_version"),
                                   hint=did_you_mean(str(version), SUPPORTED_VERSIONS)
                                   or did_you_mean(str(version), VERSION_URIS)
                                   or f"supported: {', '.join(SUPPORTED_VERSIONS)}")
        self.version = version if isinstance(version, str) else None
        for doc in self.docs:
            for key in doc.data:
                if key not in TOP_LEVEL:
                    self.diagnostics.error("unknown-section", f"'{key}' is not a TOSCA section",
                                           where(doc.data, key), hint=did_you_mean(key, TOP_LEVEL))
        metadata = root.get("metadata")
        self.metadata = dict(metadata) if isinstance(metadata, dict) else {}
        for key in ("template_name", "template_author", "template_version"):
            if key in root and key not in self.metadata:
                self.metadata[key] = root[key]

    def _read_inputs(self, inputs: Mapping, given: dict[str, tuple[Any, Location]]) -> None:
        checker = Checker(self.registry, self.diagnostics)
        for name, schema in inputs.items():
            loc = where(inputs, name)
            if not isinstance(schema, dict):
                self.diagnostics.error("wrong-type", f"input '{name}' must be a mapping with a "
                                       "type", loc)
                continue
            for key in schema:
                if key not in INPUT_KEYS:
                    self.diagnostics.error("unknown-section", f"'{key}' is not a field of an "
                                           f"input definition (input '{name}')",
                                           where(schema, key, loc),
                                           hint=did_you_mean(key, INPUT_KEYS))
            definition = InputDef(str(name), schema, loc)
            self.inputs[str(name)] = definition
            if name in given:
                value, given_loc = given[name]
                definition.value = checker.check(value, schema, f"input '{name}'", given_loc)
                definition.provided = True
            elif "default" in schema:
                definition.value = checker.check(schema["default"], schema, f"input '{name}'",
                                                 where(schema, "default", loc))
            elif schema.get("required", True) is not False:
                described = f": {definition.description}" if definition.description else ""
                # a template is valid without its inputs: plan and deploy refuse (see
                # validation.require_inputs), a form is built from them
                self.diagnostics.warning("missing-input", f"required input '{name}' has no "
                                         f"value and no default{described}", loc,
                                         hint=f"pass it with --set {name}=VALUE or -i "
                                         "inputs.yaml")
        for name, (_value, given_loc) in given.items():
            if name not in inputs:
                self.diagnostics.warning("unknown-input", f"input '{name}' is not declared by "
                                         "the template; it is ignored", given_loc,
                                         hint=did_you_mean(name, inputs))

    def _read_node(self, name: str, body, loc: Location) -> None:
        diags = self.diagnostics
        if not isinstance(body, dict):
            diags.error("wrong-type", "a node template must be a mapping", loc, node=name)
            return
        for key in body:
            if key not in NODE_KEYS:
                diags.error("unknown-section", f"'{key}' is not a node template field",
                            where(body, key, loc), node=name, hint=did_you_mean(key, NODE_KEYS))
        type_name = body.get("type")
        if type_name is None:
            diags.error("missing-field", "node template has no 'type'", loc, node=name)
            return
        canonical = self.registry.resolve("node_types", type_name)
        if canonical is None:
            diags.error("unknown-type", f"unknown node type '{type_name}'",
                        where(body, "type", loc), node=name,
                        hint=self.registry.suggest("node_types", type_name))
            return
        broken = self.registry.broken_ancestor("node_types", canonical)
        if broken is not None:
            diags.error("unknown-type", f"node type '{canonical}' cannot be used: type "
                        f"'{broken[0]}' derives from unknown type '{broken[1]}'",
                        where(body, "type", loc), node=name)
            return
        node = NodeTemplate(name, canonical, body, loc)
        self.nodes[name] = node
        for ancestor in self.registry.chain("node_types", canonical):
            self._by_type.setdefault(ancestor, []).append(name)
        prop_defs = self.registry.properties("node_types", canonical)
        props = _mapping(body, "properties", diags, name)
        for key in props:
            if key not in prop_defs:
                diags.error("unknown-property", f"property '{key}' is not defined for "
                            f"{canonical}", where(props, key, loc), node=name,
                            hint=did_you_mean(key, prop_defs))
        self._read_capabilities(node)
        chosen = native.native_interfaces(self.registry.chain("node_types", canonical),
                                          self._native)
        if chosen is not None:  # the plan names the choice for every node that has one
            node.implementation = f"{self.implementation}: {chosen[0]}"
            if self.implementation != native.NATIVE:
                chosen = None
        self._read_interfaces(node, "node_types", canonical, _mapping(body, "interfaces", diags,
                                                                        name), node.interfaces,
                              type_ifaces=native.overlay(self.registry.interfaces(
                                  "node_types", canonical), chosen[1]) if chosen else None)
        self._read_artifacts(node)

    def _read_capabilities(self, node: NodeTemplate) -> None:
        diags = self.diagnostics
        cap_defs = self.registry.capabilities(node.type)
        caps = _mapping(node.raw, "capabilities", diags, node.name)
        for cap_name, body in caps.items():
            loc = where(caps, cap_name, node.loc)
            if cap_name not in cap_defs:
                diags.error("unknown-capability", f"capability '{cap_name}' is not defined for "
                            f"{node.type}", loc, node=node.name,
                            hint=did_you_mean(cap_name, cap_defs))
                continue
            if body is None:
                continue
            if not isinstance(body, dict):
                diags.error("wrong-type", f"capability '{cap_name}' must be a mapping", loc,
                            node=node.name)
                continue
            for key in body:
                if key not in ("properties", "attributes"):
                    diags.error("unknown-section", f"'{key}' is not a capability field",
                                where(body, key, loc), node=node.name,
                                hint=did_you_mean(key, ["properties", "attributes"]))
            defs = self._capability_property_defs(node.type, cap_name)
            props = _mapping(body, "properties", diags, node.name)
            for key in props:
                if key not in defs:
                    diags.error("unknown-property", f"property '{key}' is not defined for "
                                f"capability '{cap_name}' ({cap_defs[cap_name].get('type')})",
                                where(props, key, loc), node=node.name,
                                hint=did_you_mean(key, defs))

    def _capability_property_defs(self, node_type: str, cap_name: str) -> dict:
        key = (node_type, cap_name)
        cached = self._cap_defs.get(key)
        if cached is None:
            cached = self._cap_defs[key] = self._capability_property_defs_uncached(*key)
        return cached

    def _capability_property_defs_uncached(self, node_type: str, cap_name: str) -> dict:
        cap_def = self.registry.capabilities(node_type).get(cap_name) or {}
        cap_type = self.registry.resolve("capability_types", cap_def.get("type"))
        defs = dict(self.registry.properties("capability_types", cap_type)) if cap_type else {}
        overrides = cap_def.get("properties")
        if isinstance(overrides, dict):
            for key, value in overrides.items():
                if isinstance(value, dict) and isinstance(defs.get(key), dict):
                    merged = dict(defs[key])
                    merged.update(value)
                    defs[key] = merged
                elif isinstance(value, dict):
                    defs[key] = value
        return defs

    def _read_interfaces(self, node, section: str, type_name: str, given: Mapping,
                         out: dict, type_ifaces: dict | None = None) -> None:
        """Merge operation definitions from the type (or ``type_ifaces``, a native
        implementation's) and the template into ``out``."""
        diags = self.diagnostics
        if type_ifaces is None:
            type_ifaces = self.registry.interfaces(section, type_name)
        misplaced: dict = {}
        for iface_name in set(type_ifaces) | set(given):
            type_def = type_ifaces.get(iface_name)
            body = given.get(iface_name)
            loc = where(given, iface_name, node.loc)
            if type_def is None:
                iface_type = self.registry.resolve("interface_types", iface_name)
                if iface_type is None and isinstance(body, dict):
                    iface_type = self.registry.resolve("interface_types", body.get("type"))
                if iface_type is None:
                    diags.error("unknown-interface", f"interface '{iface_name}' is not defined "
                                f"for {type_name}", loc, node=node.name,
                                hint=did_you_mean(iface_name, type_ifaces))
                    continue
                type_def = {"type": iface_type}
            if body is not None and not isinstance(body, dict):
                diags.error("wrong-type", f"interface '{iface_name}' must be a mapping", loc,
                            node=node.name)
                continue
            allowed = self._operations_of(type_def)
            ops: dict = {}
            for source in (type_def, body or {}):
                for op_name, op_body in _operation_items(source):
                    if op_name not in allowed and source is body:
                        if self._misplaced_configure(section, iface_name, op_name,
                                                     where(source, op_name, loc), node):
                            misplaced[op_name] = _merge_operation(None, op_body,
                                                                  where(source, op_name, loc))
                            continue
                        diags.error("unknown-operation", f"operation '{op_name}' is not part "
                                    f"of interface '{iface_name}'", where(source, op_name, loc),
                                    node=node.name, hint=did_you_mean(op_name, allowed))
                        continue
                    ops[op_name] = _merge_operation(ops.get(op_name), op_body,
                                                    where(source, op_name, loc))
            if ops:
                out[iface_name] = ops
        if misplaced:
            out.setdefault("Configure", {}).update(misplaced)

    def _misplaced_configure(self, section: str, iface_name: str, op_name: str,
                             loc: Location, node) -> bool:
        """A relationship operation of the Configure interface written under Standard
        (``Standard: {pre_configure_source: ...}`` in an INDIGO example): moved to
        Configure, with a warning."""
        configure = "tosca.interfaces.relationship.Configure"
        if section != "relationship_types" or iface_name != "Standard" or \
                op_name not in self.registry.interface_operations(configure):
            return False
        self.diagnostics.warning("unknown-operation", f"operation '{op_name}' belongs to the "
                                 "relationship interface 'Configure', not 'Standard'; read as "
                                 f"Configure.{op_name}", loc, node=node.name)
        return True

    def _operations_of(self, iface_def: dict) -> set[str]:
        ops = {name for name, _ in _operation_items(iface_def)}
        iface_type = iface_def.get("type") if isinstance(iface_def, dict) else None
        if isinstance(iface_type, str):
            ops |= self.registry.interface_operations(self.registry.resolve(
                "interface_types", iface_type) or iface_type)
        return ops

    def _read_artifacts(self, node: NodeTemplate) -> None:
        # a native implementation brings its own roles: the type's artifacts (the upstream
        # playbooks' Ansible roles) are not needed, the template's own still are
        merged = {} if (node.implementation or "").startswith(native.NATIVE) else dict(
            self.registry.merged("node_types", node.type, "artifacts"))
        given = _mapping(node.raw, "artifacts", self.diagnostics, node.name)
        merged.update(given)
        for name, body in merged.items():
            art_type = body.get("type") if isinstance(body, dict) else None
            if art_type is not None and self.registry.resolve("artifact_types", art_type) is None:
                self.diagnostics.error("unknown-type", f"artifact '{name}' has unknown type "
                                       f"'{art_type}'", where(body, "type",
                                                              where(given, name, node.loc)),
                                       node=node.name,
                                       hint=self.registry.suggest("artifact_types", art_type))
            node.artifacts[name] = body if isinstance(body, dict) else {"file": body}


def _operation_items(source) -> list[tuple[str, Any]]:
    if not isinstance(source, dict):
        return []
    items = []
    for key, value in source.items():
        if key == "operations" and isinstance(value, dict):
            items.extend(value.items())
        elif key not in ("type", "inputs", "description", "derived_from", "notifications",
                         "operations", "version", "metadata"):
            items.append((key, value))
    return items


def _merge_operation(current: dict | None, body, loc: Location) -> dict:
    result = dict(current or {"implementation": None, "inputs": {}, "loc": loc})
    if isinstance(body, str):
        result["implementation"] = body
        result["implementation_loc"] = loc  # where it is written (implementations.py)
    elif isinstance(body, dict):
        implementation = body.get("implementation")
        if isinstance(implementation, dict):
            implementation = implementation.get("primary")
        if implementation is not None:
            result["implementation"] = implementation
            result["implementation_loc"] = where(body, "implementation", loc)
        inputs = dict(result.get("inputs") or {})
        if isinstance(body.get("inputs"), dict):
            inputs.update(body["inputs"])
        result["inputs"] = inputs
    result["loc"] = loc
    return result

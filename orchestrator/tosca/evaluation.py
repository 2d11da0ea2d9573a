"""Property evaluation and the functions.Context the intrinsic functions resolve
against (a part of Template, kept in its own module)."""
from __future__ import annotations

from orchestrator.diagnostics import Location, did_you_mean
from orchestrator.tosca.entities import _EMPTY, _PLAIN, HOSTED_ON, NodeTemplate, Requirement
from orchestrator.tosca.functions import MISSING, Scope, walk
from orchestrator.tosca.secret import is_secret, taint
from orchestrator.tosca.values import Checker
from orchestrator.tosca.yamlsource import where


class EvaluationMixin:
    def _evaluate_node(self, node: NodeTemplate) -> None:
        compute, name, loc = self._compute, node.name, node.loc
        given = node.raw.get("properties")
        given = given if isinstance(given, dict) else _EMPTY
        for prop, schema in self.registry.properties("node_types", node.type).items():
            if schema is None:
                continue
            value = compute((name, None, prop), node, given, schema, prop, loc)
            if value is not MISSING:
                node.properties[prop] = value
        caps = node.raw.get("capabilities")
        caps = caps if isinstance(caps, dict) else _EMPTY
        for cap_name in self.registry.capabilities(node.type):
            body = caps.get(cap_name)
            given = body.get("properties") if isinstance(body, dict) else None
            given = given if isinstance(given, dict) else _EMPTY
            values = {}
            for prop, schema in self._capability_property_defs(node.type, cap_name).items():
                if schema is None:
                    continue
                value = compute((name, cap_name, prop), node, given, schema, prop, loc)
                if value is not MISSING:
                    values[prop] = value
            if values or cap_name in caps:
                node.capabilities[cap_name] = values
        scope = self._scope(name)
        for ops in node.interfaces.values():
            for op in ops.values():
                op["inputs"] = self.evaluator.evaluate_map(op.get("inputs") or {}, scope, op["loc"])
        for requirement in node.requirements:
            rel_scope = Scope(self_node=node.name, source=node.name, target=requirement.target)
            requirement.properties = self.evaluator.evaluate_map(requirement.properties, rel_scope,
                                                             requirement.loc)
            rel_scope.relationship = self._relationship_properties(requirement)
            for ops in requirement.interfaces.values():
                for op in ops.values():
                    op["inputs"] = self.evaluator.evaluate_map(op.get("inputs") or {}, rel_scope,
                                                           op["loc"])

    def _relationship_properties(self, requirement) -> dict:
        """The relationship's properties as given, over its type's defaults."""
        values = {}
        if requirement.relationship:
            defs = self.registry.properties("relationship_types", requirement.relationship)
            for prop, schema in defs.items():
                if isinstance(schema, dict) and "default" in schema:
                    values[prop] = schema["default"]
        values.update(requirement.properties or {})
        return values

    def _scope(self, node: str) -> Scope:
        scope = self._scopes.get(node)
        if scope is None:
            scope = self._scopes[node] = Scope(self_node=node)
        return scope

    def _checker(self, node: str | None) -> Checker:
        checker = self._checkers.get(node)
        if checker is None:
            checker = self._checkers[node] = Checker(self.registry, self.diagnostics, node)
        return checker

    def _compute(self, key: tuple, node: NodeTemplate, given: dict, schema, name: str,
                 loc: Location):
        props = self._props
        if key in props:
            return props[key]
        if key in self._in_progress:
            self.diagnostics.error("function-cycle", f"{name} of '{node.name}' depends on "
                                   "itself through get_property", loc, node=node.name)
            return None
        if name in given:
            raw, at = given[name], where(given, name, node.loc)
        elif isinstance(schema, dict) and "default" in schema:
            raw, at = schema["default"], where(schema, "default", node.loc)
        elif isinstance(schema, dict) and schema.get("required", True) is not False:
            self.diagnostics.error("missing-property", f"required property '{name}' has no value",
                                   node.loc, node=node.name)
            props[key] = None
            return None
        else:
            props[key] = MISSING
            return MISSING
        self._in_progress.add(key)
        if raw.__class__ not in _PLAIN:
            raw = self.evaluator.evaluate(raw, self._scope(node.name), at)
        value = self._checker(node.name).check(raw, schema, name, at)
        if is_secret(name, schema):  # a secret property: whatever is computed from it is too
            value = taint(value)
        self._in_progress.discard(key)
        props[key] = value
        return value

    def _node_property(self, node: NodeTemplate, prop: str, loc: Location):
        schema = self.registry.properties("node_types", node.type).get(prop)
        if schema is None:
            return MISSING
        given = node.raw.get("properties") if isinstance(node.raw.get("properties"),
                                                         dict) else {}
        return self._compute((node.name, None, prop), node, given, schema, prop, loc)

    def _capability_property(self, node: NodeTemplate, cap: str, prop: str, loc: Location):
        schema = self._capability_property_defs(node.type, cap).get(prop)
        if schema is None:
            return MISSING
        caps = node.raw.get("capabilities")
        body = caps.get(cap) if isinstance(caps, dict) else None
        given = body.get("properties") if isinstance(body, dict) else None
        given = given if isinstance(given, dict) else {}
        return self._compute((node.name, cap, prop), node, given, schema, prop, loc)

    # -- functions.Context --------------------------------------------------------------------
    def input_value(self, name: str, loc: Location, node: str | None):
        definition = self.inputs.get(name)
        if definition is None:
            self.diagnostics.error("undefined-input", f"get_input refers to input '{name}', "
                                   "which is not declared", loc, node=node,
                                   hint=did_you_mean(name, self.inputs))
            return None
        if is_secret(name, definition.schema):  # the taint every use of it carries on
            return taint(definition.value)
        return definition.value

    def node_exists(self, name: str) -> bool:
        return name in self.nodes

    def node_names(self) -> list[str]:
        return list(self.nodes)

    def artifact_names(self, node: str) -> list[str]:
        return [name for name in self.nodes[node].artifacts if isinstance(name, str)]

    def host_of(self, node: str | None) -> str | None:
        template = self.nodes.get(node) if node else None
        if template is None:
            return None
        for requirement in template.requirements:
            if requirement.target and (requirement.name == "host" or (
                    requirement.relationship and self.registry.is_a(
                        "relationship_types", requirement.relationship, HOSTED_ON))):
                return requirement.target
        return None

    def property_of(self, node: str, path: list, loc: Location, self_node: str | None):
        template = self.nodes[node]
        if not path or not isinstance(path[0], str):
            return MISSING
        prop_defs = self.registry.properties("node_types", template.type)
        head = path[0]
        if len(path) >= 2 and head not in prop_defs:
            if head in self.registry.capabilities(template.type):
                value = self._capability_property(template, head, path[1], loc)
                if value is MISSING and path[1] in self._capability_property_defs(
                        template.type, head):
                    return None
                return walk(value, path[2:], MISSING)
            for requirement in template.requirements:
                if requirement.name == head and requirement.target:
                    return self._requirement_property(requirement, path[1:], loc, self_node)
        value = self._node_property(template, head, loc)
        if value is MISSING and head in prop_defs:
            return None  # declared but not set: null
        return walk(value, path[1:], MISSING)

    def _requirement_property(self, requirement: Requirement, path: list, loc: Location,
                              self_node: str | None):
        """[node, requirement, prop, ...]: the property of the target's capability that
        fulfils the requirement, else the target node's own property."""
        target = self.nodes[requirement.target]
        if requirement.capability:
            cap = self.registry.capability_offers(target.type, requirement.capability)
            if cap and path and path[0] in self._capability_property_defs(target.type, cap):
                value = self._capability_property(target, cap, path[0], loc)
                return None if value is MISSING else walk(value, path[1:], MISSING)
        return self.property_of(requirement.target, path, loc, self_node)

    def attribute_declared(self, node: str, path: list) -> bool:
        template = self.nodes[node]
        if not path or not isinstance(path[0], str):
            return False
        head = path[0]
        section_items = (self.registry.attributes("node_types", template.type),
                         self.registry.properties("node_types", template.type))
        if any(head in items for items in section_items):
            return True
        caps = self.registry.capabilities(template.type)
        if head in caps and len(path) >= 2:
            cap_type = self.registry.resolve("capability_types", caps[head].get("type"))
            if cap_type is None:
                return False
            return path[1] in self.registry.attributes("capability_types", cap_type) or \
                path[1] in self.registry.properties("capability_types", cap_type)
        return any(r.name == head for r in template.requirements) or \
            head in self.registry.requirements(template.type)

    def operation_declared(self, node: str, interface: str, operation: str) -> bool:
        template = self.nodes[node]
        if operation in template.interfaces.get(interface, {}):
            return True
        type_ifaces = self.registry.interfaces("node_types", template.type)
        wanted = self.registry.resolve("interface_types", interface)
        for name, definition in type_ifaces.items():
            if not isinstance(definition, dict):
                continue
            iface_type = self.registry.resolve("interface_types", definition.get("type"))
            if name == interface or (wanted is not None and iface_type == wanted):
                return operation in self._operations_of(definition)
        return False

    def nodes_of_type(self, type_name: str) -> list[str]:
        return list(self._by_type.get(self.registry.resolve("node_types", type_name) or "", []))

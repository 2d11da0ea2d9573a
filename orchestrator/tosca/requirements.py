"""Requirements of node templates: targets, relationships and capability checks
(a part of Template, kept in its own module)."""
from __future__ import annotations

from orchestrator.diagnostics import Location, did_you_mean
from orchestrator.tosca.entities import NodeTemplate, Requirement
from orchestrator.tosca.functions import FUNCTIONS
from orchestrator.tosca.yamlsource import Mapping, where

#: the keys of a requirement assignment (TOSCA 1.3 3.8.2), of a relationship written in
#: one, and of a relationship template (3.8.4)
REQUIREMENT_FIELDS = ("node", "capability", "relationship", "node_filter", "occurrences")
RELATIONSHIP_FIELDS = ("type", "description", "properties", "interfaces")
RELATIONSHIP_TEMPLATE_FIELDS = ("type", "description", "metadata", "properties", "attributes",
                                "interfaces", "copy")


class RequirementsMixin:
    def _read_requirements(self, node: NodeTemplate) -> None:
        diags = self.diagnostics
        reqs = node.raw.get("requirements")
        if reqs is None:
            return
        if not isinstance(reqs, list):
            diags.error("wrong-type", "'requirements' must be a list of single-key mappings",
                        where(node.raw, "requirements", node.loc), node=node.name)
            return
        req_defs = self.registry.requirements(node.type)
        for index, entry in enumerate(reqs):
            loc = where(reqs, index, node.loc)
            if not isinstance(entry, dict) or len(entry) != 1:
                diags.error("wrong-type", "a requirement must be a single-key mapping", loc,
                            node=node.name)
                continue
            req_name, body = next(iter(entry.items()))
            loc = where(entry, req_name, loc)
            definition = req_defs.get(req_name)
            if definition is None:
                definition = self._undeclared_requirement(node, req_name, body, req_defs, loc)
                if definition is None:
                    continue
            requirement = self._requirement(node, str(req_name), body, definition, loc)
            if requirement is not None:
                node.requirements.append(requirement)

    def _check_occurrences(self, node: NodeTemplate) -> None:
        """A requirement whose definition asks for at least one target and that the node
        template leaves out is a warning: INDIGO's ElasticCluster runs without a host, as
        IM and the INDIGO PaaS orchestrator take it (tosca-parser refuses it)."""
        given = {r.name for r in node.requirements}
        for name, definition in self.registry.requirements(node.type).items():
            occurrences = definition.get("occurrences") if isinstance(definition, dict) else None
            lower = occurrences[0] if isinstance(occurrences, list) and occurrences else 1
            if name in given or not isinstance(lower, int) or lower < 1:
                continue
            if name != "host" and occurrences is None:
                continue  # TOSCA's default [1, 1]; only 'host' is held to it
            self.diagnostics.warning(
                "missing-requirement", f"requirement '{name}' of {node.type} asks for at least "
                f"{lower} target(s) and none is given", node.loc, node=node.name)

    def _undeclared_requirement(self, node, name, body, req_defs: dict,
                                loc: Location) -> dict | None:
        """A requirement the node's type does not declare. A misspelt one is an error; one
        that names an existing node template (as tosca-parser and IM accept, e.g.
        ``local_storage: {node: volume, relationship: AttachesTo}``) is taken as written,
        with a warning: its relationship is the one given, else DependsOn."""
        hint = did_you_mean(name, req_defs)
        target = body if isinstance(body, str) else \
            body.get("node") if isinstance(body, dict) else None
        if hint or not isinstance(target, str) or target not in self.nodes:
            self.diagnostics.error("unknown-requirement", f"requirement '{name}' is not defined "
                                   f"for {node.type}", loc, node=node.name, hint=hint)
            return None
        self.diagnostics.warning("unknown-requirement", f"requirement '{name}' is not defined "
                                 f"for {node.type}; taken as written, towards node '{target}'",
                                 loc, node=node.name)
        return {"relationship": "tosca.relationships.DependsOn"}

    def _requirement(self, node, name: str, body, definition: dict, loc: Location):
        diags = self.diagnostics
        if isinstance(body, str):
            body = {"node": body}
        if not isinstance(body, dict):
            diags.error("wrong-type", f"requirement '{name}' must name a node or be a mapping",
                        loc, node=node.name)
            return None
        if not self._requirement_fields(node, name, body, loc):
            return None
        target = body.get("node", definition.get("node"))
        capability = body.get("capability", definition.get("capability"))
        relationship = body.get("relationship", definition.get("relationship"))
        rel_props: dict = {}
        rel_ifaces: Mapping = Mapping()
        if isinstance(relationship, dict):
            self._known_fields(node, relationship, RELATIONSHIP_FIELDS, "a relationship "
                               f"(requirement '{name}')", where(body, "relationship", loc))
            rel_props = relationship.get("properties") or {}
            rel_ifaces = relationship.get("interfaces") or Mapping()
            relationship = relationship.get("type")
        if isinstance(relationship, str) and relationship in self.relationship_templates:
            template = self.relationship_templates[relationship]
            if isinstance(template, dict):
                rel_props = template.get("properties") or {}
                rel_ifaces = template.get("interfaces") or Mapping()
                relationship = template.get("type")
        rel_type = None
        if relationship is not None:
            rel_type = self.registry.resolve("relationship_types", relationship)
            if rel_type is None:
                rel_loc = where(body, "relationship", loc)
                if isinstance(body.get("relationship"), dict):
                    rel_loc = where(body["relationship"], "type", rel_loc)
                diags.error("unknown-type", f"requirement '{name}' uses unknown relationship "
                            f"'{relationship}'", rel_loc, node=node.name,
                            hint=self.registry.suggest("relationship_types", relationship))
            elif isinstance(rel_props, dict) and rel_props:
                defs = self.registry.properties("relationship_types", rel_type)
                for key in rel_props:
                    if key not in defs:
                        diags.error("unknown-property", f"property '{key}' is not defined for "
                                    f"relationship {rel_type}", where(rel_props, key, loc),
                                    node=node.name, hint=did_you_mean(key, defs))
        target_name = self._target(node, name, target, body, loc)
        result = Requirement(name, target_name, capability if isinstance(capability, str)
                             else None, rel_type, rel_props if isinstance(rel_props, dict) else {},
                             {}, loc)
        if target_name is not None:
            self._check_target(node, result, definition, loc)
        if rel_type and isinstance(rel_ifaces, dict):
            holder = NodeTemplate(node.name, rel_type, Mapping(), loc)
            self._read_interfaces(holder, "relationship_types", rel_type, rel_ifaces,
                                  result.interfaces)
        return result

    def _requirement_fields(self, node, name: str, body: dict, loc: Location) -> bool:
        """False (after an error) for a requirement no target can be read from: a function
        in place of the assignment, or ``node: null``; unknown keys are errors too."""
        if len(body) == 1 and next(iter(body)) in FUNCTIONS:
            self.diagnostics.error(
                "wrong-type", f"requirement '{name}' is the function {next(iter(body))}: a "
                "requirement names its node directly (a function may not choose it)", loc,
                node=node.name, hint="name the node template, e.g. 'host: server'")
            return False
        self._known_fields(node, body, REQUIREMENT_FIELDS, f"a requirement ('{name}')", loc)
        if "node" in body and body["node"] is None:
            self.diagnostics.error("wrong-type", f"requirement '{name}': 'node' is null; name "
                                   "a node template or leave 'node' out",
                                   where(body, "node", loc), node=node.name)
            return False
        return True

    def _known_fields(self, node, body: dict, allowed, what: str, loc: Location) -> None:
        for key in body:
            if key not in allowed:
                self.diagnostics.error("unknown-section", f"'{key}' is not a field of {what}",
                                       where(body, key, loc), node=node.name if node else None,
                                       hint=did_you_mean(str(key), allowed))

    def _check_relationship_templates(self, templates: Mapping) -> None:
        for name, body in templates.items():
            loc = where(templates, name)
            if not isinstance(body, dict):
                self.diagnostics.error("wrong-type", f"relationship template '{name}' must be "
                                       "a mapping", loc)
                continue
            self._known_fields(None, body, RELATIONSHIP_TEMPLATE_FIELDS,
                               f"relationship template '{name}'", loc)

    def _target(self, node, name: str, target, body: dict, loc: Location) -> str | None:
        if target is None:
            return None
        if not isinstance(target, str):
            self.diagnostics.error("wrong-type", f"requirement '{name}': 'node' must be a name",
                                   loc, node=node.name)
            return None
        if target in self.nodes:
            return target
        node_type = self.registry.resolve("node_types", target)
        if node_type is not None:  # an abstract requirement: pick the only node of that type
            candidates = [n for n in self._by_type.get(node_type, []) if n != node.name]
            if len(candidates) == 1:
                return candidates[0]
            if "node" in body:
                self.diagnostics.warning(
                    "unresolved-reference", f"requirement '{name}' asks for a node of type "
                    f"{node_type}; {len(candidates)} node templates match, none chosen",
                    loc, node=node.name)
            return None
        self.diagnostics.error("unknown-node", f"requirement '{name}' refers to node '{target}', "
                               "which does not exist", where(body, "node", loc), node=node.name,
                               hint=did_you_mean(target, self.nodes))
        return None

    def _check_target(self, node, requirement: Requirement, definition: dict,
                      loc: Location) -> None:
        target = self.nodes[requirement.target]
        wanted_node = definition.get("node")
        if isinstance(wanted_node, str) and self.registry.resolve("node_types", wanted_node) and \
                not self.registry.is_a("node_types", target.type, wanted_node):
            message = f"requirement '{requirement.name}' needs a node of type {wanted_node}; " \
                      f"'{target.name}' is a {target.type}"
            if not self._hosted_on_a_hosted_node(requirement, target):
                self.diagnostics.error("requirement-mismatch", message, loc, node=node.name)
                return
            # INDIGO templates host software on software (host: mesos_slave): the node
            # goes where its target runs, as IM and tosca-parser take it
            self.diagnostics.warning("requirement-mismatch", f"{message}, itself hosted: the "
                                     f"node is placed on the host of '{target.name}'", loc,
                                     node=node.name)
            if requirement.capability:
                return
        capability = requirement.capability
        if capability and self.registry.capability_offers(target.type, capability) is None \
                and not self._hosted_on_a_hosted_node(requirement, target):
            self.diagnostics.error(
                "requirement-mismatch", f"requirement '{requirement.name}' needs capability "
                f"{capability}, which '{target.name}' ({target.type}) does not offer", loc,
                node=node.name)

    def _hosted_on_a_hosted_node(self, requirement: Requirement, target: NodeTemplate) -> bool:
        """A HostedOn requirement towards a node that itself has a host requirement."""
        if not requirement.relationship or not self.registry.is_a(
                "relationship_types", requirement.relationship, "tosca.relationships.HostedOn"):
            return False
        entries = target.raw.get("requirements")
        return isinstance(entries, list) and any(
            isinstance(entry, dict) and "host" in entry for entry in entries)

"""Groups, policies and outputs of a topology template (a part of Template, kept in its
own module)."""
from __future__ import annotations

from orchestrator.diagnostics import Location, did_you_mean
from orchestrator.tosca.functions import Scope
from orchestrator.tosca.values import Checker
from orchestrator.tosca.yamlsource import Mapping, where

#: the keys of an output, a parameter definition (TOSCA 1.3 3.6.14)
OUTPUT_FIELDS = ("type", "description", "value", "required", "default", "status",
                 "constraints", "key_schema", "entry_schema", "metadata")


class SectionsMixin:
    def _read_groups(self, groups: Mapping) -> None:
        for name, body in groups.items():
            loc = where(groups, name)
            if not isinstance(body, dict):
                self.diagnostics.error("wrong-type", f"group '{name}' must be a mapping", loc)
                continue
            self._check_type_ref("group_types", body, loc, f"group '{name}'")
            members = body.get("members") or []
            if not isinstance(members, list):
                self.diagnostics.error("wrong-type", f"group '{name}': 'members' must be a list "
                                       "of node template names", where(body, "members", loc),
                                       hint=f"members: [{members}]" if isinstance(members, str)
                                       else None)
            for member in members if isinstance(members, list) else []:
                if not isinstance(member, str) or member not in self.nodes:
                    self.diagnostics.error("unknown-target", f"group '{name}' member '{member}' "
                                           "is not a node template", where(body, "members", loc),
                                           hint=did_you_mean(member, self.nodes))
            self.groups[str(name)] = {"type": body.get("type"), "members": list(members) if
                                      isinstance(members, list) else [],
                                      "properties": dict(body.get("properties") or {})}

    def _read_policies(self, topology: Mapping) -> None:
        policies = topology.get("policies")
        if policies is None:
            return
        entries = policies.items() if isinstance(policies, dict) else (
            (next(iter(p.items())) if isinstance(p, dict) and len(p) == 1 else (None, p))
            for p in (policies if isinstance(policies, list) else []))
        if not isinstance(policies, (list, dict)):
            self.diagnostics.error("wrong-type", "'policies' must be a list", where(topology,
                                                                                      "policies"))
        for name, body in entries:
            loc = where(policies, name) if isinstance(policies, dict) else where(topology,
                                                                                  "policies")
            if name is None or not isinstance(body, dict):
                self.diagnostics.error("wrong-type", "a policy must be {name: {type, targets, "
                                       "properties}}", loc)
                continue
            loc = body.loc if isinstance(body, Mapping) else loc
            type_name = self._check_type_ref("policy_types", body, loc, f"policy '{name}'")
            targets = body.get("targets") or []
            for target in targets if isinstance(targets, list) else []:
                if not isinstance(target, str) or (target not in self.nodes
                                                   and target not in self.groups):
                    self.diagnostics.error("unknown-target", f"policy '{name}' target "
                                           f"'{target}' is not a node template or group",
                                           where(body, "targets", loc),
                                           hint=did_you_mean(target, list(self.nodes)
                                                             + list(self.groups)))
            props = self.evaluator.evaluate_map(body.get("properties") or {}, Scope(), loc)
            if type_name and isinstance(props, dict):
                defs = self.registry.properties("policy_types", type_name)
                checker = Checker(self.registry, self.diagnostics)
                for key in props:
                    if key not in defs:
                        self.diagnostics.error("unknown-property", f"policy '{name}': property "
                                               f"'{key}' is not defined for {type_name}",
                                               where(body.get("properties"), key, loc),
                                               hint=did_you_mean(key, defs))
                    else:
                        props[key] = checker.check(props[key], defs[key], key, loc)
            self.policies.append({"name": str(name), "type": type_name, "targets":
                                  list(targets) if isinstance(targets, list) else [],
                                  "properties": props, "loc": loc})

    def _check_type_ref(self, section: str, body: dict, loc: Location, what: str) -> str | None:
        type_name = body.get("type")
        resolved = self.registry.resolve(section, type_name)
        if resolved is None:
            self.diagnostics.error("unknown-type" if type_name else "missing-field",
                                   f"{what} has unknown type '{type_name}'" if type_name else
                                   f"{what} has no type", where(body, "type", loc),
                                   hint=self.registry.suggest(section, type_name))
        return resolved

    def _read_outputs(self, outputs: Mapping) -> None:
        for name, body in outputs.items():
            loc = where(outputs, name)
            for key in body if isinstance(body, dict) else ():
                if key not in OUTPUT_FIELDS:
                    self.diagnostics.error("unknown-section", f"'{key}' is not a field of an "
                                           f"output (output '{name}')", where(body, key, loc),
                                           hint=did_you_mean(str(key), OUTPUT_FIELDS))
            if not isinstance(body, dict) or "value" not in body:
                self.diagnostics.error("missing-value", f"output '{name}' has no value", loc)
                continue
            value = self.evaluator.evaluate(body["value"], Scope(output=str(name)),
                                            where(body, "value", loc))
            self.outputs[str(name)] = {"description": body.get("description"), "value": value}

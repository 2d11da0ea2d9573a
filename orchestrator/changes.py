"""Day-two changes of a deployment: an update, a plan against it, a scale. A part of
``lifecycle.Orchestrator``, kept in its own module.

A deployment remembers what it was made with: its template (``template_path``), its
non-secret inputs (``inputs``) and the counts set with ``scale`` (its last plan's
``scaling``). A change merges what is given now over them, so ``update NAME --set a=1``
changes ``a`` and nothing else. Secret inputs are never stored: the names of those given
before are in the last plan (masked), and the front end asks for them again
(``secrets_to_ask``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable

from orchestrator.errors import OrchestratorError
from orchestrator.topology.secrets import MASK
from orchestrator.validation import resolve_template


class Changes:
    """What ``Orchestrator`` changes; it provides ``store``, ``owner``, ``deployment()`` and
    ``plan()``."""

    def existing(self, template: str | None, name: str | None):
        """The deployment that ``deploy TEMPLATE [--name NAME]`` would make, if it exists."""
        name = name or deployment_name(template)
        return self.store.get_deployment(name, owner=self.owner) if name else None

    def secrets_to_ask(self, name: str, input_files: Iterable[str] = (),
                       sets: Iterable[str] = ()) -> list[str]:
        """The secret inputs deployment ``name`` was last planned with (never stored, so
        needed again) that are not given now."""
        record = self.store.get_deployment(name, owner=self.owner)
        if record is None:
            return []
        given = given_keys(input_files, sets)
        return [k for k in earlier_secrets(record) if k not in given]

    def plan_change(self, name: str, template: str | None = None,
                    input_files: Iterable[str] = (), sets: Iterable[str] = (),
                    refresh: bool = True, import_options=None, scaling=None):
        """Plan deployment ``name`` to ``template`` (default: the one it was made from)
        with the inputs given now merged over those it keeps."""
        record = self.deployment(name)
        template, sets = remembered(record, template, input_files, sets)
        return self.plan(template, input_files, sets, name=record.name, refresh=refresh,
                         import_options=import_options, scaling=scaling)

    def resume_plan(self, name: str, input_files=(), sets=()):
        """Plan what is left of an interrupted deployment, from what it keeps."""
        return self.plan_change(name, None, input_files, sets)

    def plan_scale(self, name: str, node: str, count: int, remove: Iterable[int] = (),
                   input_files: Iterable[str] = (), sets: Iterable[str] = (),
                   import_options=None):
        """Plan ``count`` instances of ``node`` (``remove``: these instance indexes go
        first). A count the template takes from an input sets that input (kept like any
        other); a fixed count is overridden until the template's own count changes."""
        if count < 0:
            raise OrchestratorError("a count is 0 or more")
        record = self.deployment(name)
        remove = sorted(set(remove))
        have = sorted(r.index for r in self.store.resources(record.id)
                      if r.node == node and r.kind == "compute")
        _check_removal(node, count, remove, have)
        sets = list(sets)
        driving = count_input(record.template_text, node)
        if driving and driving not in given_keys(input_files, sets):
            sets.append(f"{driving}={count}")
        request = {node: {"count": count, **({"remove": remove} if remove else {})}}
        return self.plan_change(name, None, input_files, sets,
                                import_options=import_options, scaling=request)


def deployment_name(template: str | None) -> str | None:
    """A deployment's default name: its template's file name."""
    if not template:
        return None
    return os.path.splitext(os.path.basename(resolve_template(template)))[0]


def earlier_secrets(record) -> list[str]:
    """The names of the secret inputs the deployment was last planned with (masked in its
    plan; their values are never stored)."""
    planned = ((record.plan or {}).get("inputs") or {}) if record is not None else {}
    return [k for k, v in planned.items() if v == MASK]


def given_keys(input_files: Iterable[str] = (), sets: Iterable[str] = ()) -> set[str]:
    from orchestrator.lifecycle import _file_keys

    return {s.partition("=")[0].strip() for s in sets} | _file_keys(input_files)


def remembered(record, template: str | None, input_files: Iterable[str] = (),
               sets: Iterable[str] = ()) -> tuple[str, list[str]]:
    """(the template, the input values as --set text): the deployment's stored inputs that
    are not given again now (in ``input_files`` or ``sets``), then ``sets``."""
    sets = list(sets)
    given = given_keys(input_files, sets)
    kept = [f"{k}={json.dumps(v)}" for k, v in (record.inputs or {}).items()
            if k not in given]
    if template is None:
        template = record.template_path
        if not template or not os.path.exists(template):
            raise OrchestratorError(
                f"deployment '{record.name}' was made from {template or 'a template'}, "
                f"which is gone; give the template: orchestrator update {record.name} "
                "TEMPLATE")
    return template, kept + sets


def _check_removal(node: str, count: int, remove: list[int], have: list[int]) -> None:
    unknown = [i for i in remove if i not in have]
    if unknown:
        raise OrchestratorError(
            f"node '{node}' has no instance {', '.join(map(str, unknown))} (it has "
            f"{', '.join(map(str, have)) or 'none'})")
    if len(remove) > max(0, len(have) - count):
        raise OrchestratorError(
            f"scaling '{node}' from {len(have)} to {count} removes "
            f"{max(0, len(have) - count)} instance(s), but --remove names {len(remove)}")


def count_input(template_text: str, node: str) -> str | None:
    """The input that gives ``node`` its count in the template's own text (``scalable``
    ``count`` or ``default_instances`` as ``get_input``), or None."""
    import yaml

    try:
        data = yaml.safe_load(template_text or "")
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    for section in ("topology_template", "service_template"):
        nodes = (data.get(section) or {}).get("node_templates") \
            if isinstance(data.get(section), dict) else None
        spec = nodes.get(node) if isinstance(nodes, dict) else None
        if isinstance(spec, dict):
            props = (((spec.get("capabilities") or {}).get("scalable") or {})
                     .get("properties") or {})
            for key in ("count", "default_instances"):
                value = props.get(key) if isinstance(props, dict) else None
                if isinstance(value, dict) and len(value) == 1:
                    (function, argument), = value.items()
                    if function in ("get_input", "$get_input"):
                        argument = argument[0] if isinstance(argument, list) else argument
                        return argument if isinstance(argument, str) else None
    return None


def scale_topology(topology, carried: dict | None, requested: dict | None = None):
    """(the topology with the counts set by ``scale``, those counts as the plan keeps them).

    ``carried``: the counts a plan kept (the deployment's last, or a saved plan), each
    applied while the template's own count is still the one it overrode (``from``);
    ``requested``: {node: {count, remove}} of a ``scale`` now."""
    result = {}
    for name, held in (carried or {}).items():
        node = topology.nodes.get(name)
        if node is not None and node.compute is not None and \
                node.compute.scaling.count == held.get("from"):
            result[name] = dict(held)
    for name, wanted in (requested or {}).items():
        node = topology.nodes.get(name)
        if node is None or node.compute is None:
            known = ", ".join(n.name for n in topology.compute_nodes()) or "none"
            raise OrchestratorError(f"the template has no server node '{name}' to scale "
                                    f"(its server nodes: {known})")
        result[name] = {"count": int(wanted["count"]), "from": node.compute.scaling.count,
                        **({"remove": list(wanted["remove"])} if wanted.get("remove")
                           else {})}
    result = {k: v for k, v in result.items() if v["count"] != v["from"] or v.get("remove")}
    if not result:
        return topology, {}
    nodes = dict(topology.nodes)
    for name, held in result.items():
        node = nodes[name]
        scaling = dataclasses.replace(
            node.compute.scaling, count=held["count"],
            min_instances=min(node.compute.scaling.min_instances, held["count"]),
            max_instances=None if node.compute.scaling.max_instances is None else
            max(node.compute.scaling.max_instances, held["count"]),
            removal_list=tuple(f"{name}[{i}]" for i in held.get("remove", ())))
        nodes[name] = dataclasses.replace(
            node, compute=dataclasses.replace(node.compute, scaling=scaling))
    return dataclasses.replace(topology, nodes=nodes), result


def carried_scaling(record) -> dict:
    """The counts the deployment's last plan set with ``scale`` (not its removals, done)."""
    kept = ((record.plan or {}).get("scaling") or {}) if record is not None else {}
    return {node: {k: v for k, v in held.items() if k != "remove"}
            for node, held in kept.items()}

"""Build a plan: the desired resources of a topology, diffed against what exists.

No side effects: the caller passes the placement, the deployment's current resources
(already refreshed from the providers, so drift shows up) and an estimator.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Callable

from orchestrator.placement import Placement
from orchestrator.plan.model import (
    CONFIGURE,
    CREATE,
    DELETE,
    NOOP,
    REPLACE,
    UPDATE,
    Plan,
    Step,
    critical_path,
)
from orchestrator.topology.model import Node, Topology
from orchestrator.tosca.functions import Deferred
from orchestrator.tosca.secret import tainted, untaint
from orchestrator.tosca.values import scalar_to

INFRA_KINDS = ("network", "volume", "port", "compute")
Key = tuple  # (node, index, kind)


@dataclass(frozen=True)
class Existing:
    """A resource as the state store (refreshed) knows it."""

    node: str
    index: int
    kind: str
    site: str | None
    provider_id: str | None
    status: str
    spec: dict
    attributes: dict


def digest(data, fingerprint: Callable[[object], str] | None = None) -> str:
    """A short sha256 of plain data. Secret values in it enter only through ``fingerprint``,
    a keyed digest (the sealing key's, by default), so the digest changes when a secret does
    but cannot be checked against guesses of it."""
    if tainted(data):
        data = _fingerprinted(data, fingerprint or user_key_fingerprint())
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fingerprinted(value, fingerprint):
    if isinstance(value, dict):
        return {k: _fingerprinted(v, fingerprint) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fingerprinted(v, fingerprint) for v in value]
    if tainted(value):  # a secret, or a function of one (a Deferred over a secret)
        plain = value.to_json() if isinstance(value, Deferred) else value
        return {"secret": fingerprint(untaint(plain))}
    return value


def user_key_fingerprint() -> Callable[[object], str]:
    """Fingerprints with the key this user's processes (and a service on this machine) seal
    with (``sealing.default_sealer``), read on first use."""
    sealer = None

    def fingerprint(value) -> str:
        nonlocal sealer
        if sealer is None:
            from orchestrator.sealing import default_sealer

            sealer = default_sealer()
        return sealer.fingerprint(value)

    return fingerprint


def follow_map(topology: Topology) -> dict[str, str | None]:
    """Node -> the compute node its instances follow (through hosting, binding or
    attachment), computed once for the whole topology."""
    links: dict[str, list[str]] = {}
    for rel in topology.relationships:
        if rel.kind in ("HostedOn", "BindsTo"):
            links.setdefault(rel.source, []).append(rel.target)
        elif rel.kind == "AttachesTo":
            source, target = topology.nodes[rel.source], topology.nodes[rel.target]
            if source.compute is not None:
                links.setdefault(rel.target, []).append(rel.source)
            elif target.compute is not None:
                links.setdefault(rel.source, []).append(rel.target)
    result: dict[str, str | None] = {}
    for name in topology.order:
        seen, current = set(), name
        while current is not None and current not in seen:
            seen.add(current)
            if topology.nodes[current].compute is not None:
                break
            nxt = links.get(current)
            current = nxt[0] if nxt else None
        result[name] = current if current is not None and \
            topology.nodes[current].compute is not None else None
    return result


def compute_indexes(node: Node, existing: list[Existing]) -> list[int]:
    """Instance indexes after scaling: keep what exists, add new, remove per
    removal_list first, else the newest."""
    count = max(0, node.compute.scaling.count)  # validate refuses a negative count
    have = sorted({e.index for e in existing if e.node == node.name and e.kind == "compute"})
    if len(have) <= count:
        result, taken = list(have), set(have)
        candidate = 0
        while len(result) < count:
            if candidate not in taken:
                result.append(candidate)
            candidate += 1
        return sorted(result)
    removal = set(node.compute.scaling.removal_list)
    by_index = {e.index: e for e in existing if e.node == node.name and e.kind == "compute"}
    marked = [i for i in have if {f"{node.name}[{i}]", str(i), by_index[i].provider_id}
              & removal]
    keep = [i for i in have if i not in marked]
    while len(keep) > count:
        keep.pop()  # the newest
    while len(keep) < count:  # removal_list named more than needed: keep the oldest marked
        keep.append(marked.pop(0))
    return sorted(keep)


def _kind(node: Node) -> str:
    return {"compute": "compute", "storage": "volume", "network": "network",
            "port": "port"}.get(node.kind, "software")


def desired(topology: Topology, placement: Placement, existing: list[Existing],
            fingerprint: Callable[[object], str] | None = None) -> dict[Key, dict]:
    """(node, index, kind) -> spec, for every resource the topology wants."""
    fingerprint = fingerprint or user_key_fingerprint()
    indexes = {n.name: compute_indexes(n, existing) for n in topology.compute_nodes()}
    follows = follow_map(topology)
    result: dict[Key, dict] = {}
    for name in topology.order:
        node = topology.nodes[name]
        kind = _kind(node)
        follow = follows[name]
        site = placement.site_of(follow or name)
        spec = _spec(node, kind, placement, site, fingerprint)
        if kind == "software" and not node.operations and node.kind == "other":
            continue
        for index in indexes.get(follow, [0]) if follow else [0]:
            result[(name, index, kind)] = spec
        if kind == "compute" and _configures_itself(node):
            software = _spec(node, "software", placement, site, fingerprint)
            for index in indexes.get(name, [0]):
                result[(name, index, "software")] = software
    for rel in topology.relationships:  # a volume attached to each of its server's instances
        if rel.kind != "AttachesTo":
            continue
        server, volume = rel.source, rel.target
        if topology.nodes[server].compute is None:
            server, volume = volume, server
        if topology.nodes[server].compute is None:
            continue
        for index in indexes.get(server, [0]):
            result[(volume, index, "attachment")] = {
                "site": placement.site_of(server), "server": server, "volume": volume,
                "device": rel.properties.get("device"), "location":
                rel.properties.get("location")}
    return result


def _configures_itself(node: Node) -> bool:
    """A server whose own lifecycle operations run once it is up: a native implementation
    of another catalogue's server type (INDIGO / INFN-Cloud VMs: users, their keys)."""
    return (node.implementation or "").startswith("native") and any(
        op.implementation for op in node.operations)


def _spec(node: Node, kind: str, placement: Placement, site: str | None,
          fingerprint: Callable[[object], str] | None = None) -> dict:
    if kind == "compute":
        placed = placement.nodes.get(node.name)
        req = node.compute
        return {"site": site, "flavor": placed.choice.flavor.name if placed else None,
                "image": placed.choice.image.name if placed and placed.choice.image else None,
                "public_ip": req.public_ip,
                "ports": [p.to_dict() for p in req.ports],
                "networks": list(req.networks), "volumes": [v.node for v in req.volumes],
                "requirements": _requirements(req),
                **({"volume_locations": locations} if (locations := {
                    v.node: v.location for v in req.volumes if v.location}) else {})}
    if kind == "volume":
        size = node.properties.get("size")
        gib = scalar_to(size, "scalar-unit.size", "GiB") if isinstance(size, str) else size
        return {"site": site, "size_gib": math.ceil(gib) if isinstance(gib, (int, float))
                else None, "volume_type": node.properties.get("volume_type") or
                node.properties.get("type")}
    if kind in ("network", "port"):  # the settings a provider acts on, and a digest of all
        return {"site": site, "properties": digest(node.properties, fingerprint),
                **{k: node.properties[k] for k in NETWORK_SETTINGS
                   if node.properties.get(k) is not None}}
    return {"site": site, "properties": digest(node.properties, fingerprint),
            "operations": digest([o.to_dict() for o in node.operations], fingerprint),
            **({"implementation": node.implementation} if node.implementation else {})}


NETWORK_SETTINGS = ("network_name", "network_id", "cidr", "existing", "ip_version",
                    "gateway_ip", "start_ip", "end_ip", "dhcp_enabled")


def _requirements(req) -> dict:
    """What the template asked of a server, for providers that size it themselves
    (Kubernetes requests, OpenNebula templates) or need more than the flavor says
    (CVMFS mounts, GPU model selectors). Defaults are left out."""
    facts: dict = {k: v for k, v in (("cpus", req.cpus), ("memory_mib", req.memory_mib),
                                     ("disk_gib", req.disk_gib)) if v is not None}
    if req.gpus.count:
        facts["gpus"] = {k: v for k, v in req.gpus.to_dict().items() if v is not None}
    if req.infiniband:
        facts["infiniband"] = True
    if req.preemptible:
        facts["preemptible"] = True
    if req.cvmfs.repositories:
        facts["cvmfs"] = {k: v for k, v in req.cvmfs.to_dict().items() if v is not None}
    return facts


def _change(kind: str, old: Existing, spec: dict) -> tuple[str, str]:
    """(action, reason) for an existing resource given its desired spec."""
    if old.status == "deleted":
        return CREATE, "missing from the cloud (deleted outside the orchestrator): recreate"
    if kind == "software":
        if old.status != "configured":
            return CONFIGURE, f"previous run did not finish ({old.status})"
        if old.spec != spec:
            return CONFIGURE, "properties or operations changed"
        return NOOP, "unchanged"
    if old.status in ("creating", "error", "planned", "building") or not old.provider_id:
        return CREATE, f"previous run did not finish ({old.status}): resume"
    if old.spec.get("site") not in (None, spec.get("site")):
        return REPLACE, f"site {old.spec.get('site')} -> {spec.get('site')}"
    if kind == "compute":
        actual = old.attributes.get("flavor")
        if old.spec.get("image") != spec.get("image"):
            return REPLACE, f"image {old.spec.get('image')} -> {spec.get('image')}"
        if old.spec.get("flavor") != spec.get("flavor"):
            return UPDATE, f"flavor {old.spec.get('flavor')} -> {spec.get('flavor')}"
        if actual and actual != spec.get("flavor"):
            return UPDATE, (f"resized outside the orchestrator to {actual}: restore "
                            f"{spec.get('flavor')}")
        if old.spec != spec:
            return UPDATE, "settings changed"
        return NOOP, "unchanged"
    if kind == "attachment" and old.status != "active":
        return CREATE, f"previous run did not finish ({old.status}): resume"
    if old.spec != spec:
        return (UPDATE if kind == "volume" else REPLACE), "settings changed"
    return NOOP, "unchanged"


def build_plan(topology: Topology, placement: Placement, existing: list[Existing], *,
               deployment: str, base_serial: int, template_digest: str,
               estimate: Callable[[str | None, str, str], float],
               inputs: dict | None = None, sites_file: str | None = None,
               deployment_id: str | None = None,
               remote_imports: dict[str, str] | None = None,
               fingerprint: Callable[[object], str] | None = None) -> Plan:
    """The plan; ``fingerprint`` digests secrets in the specs (keyed: see ``digest``)."""
    wanted = desired(topology, placement, existing, fingerprint)
    have = {(e.node, e.index, e.kind): e for e in existing}
    position = {name: i for i, name in enumerate(topology.order)}
    changed_hosts: set[tuple[str, int]] = set()
    follows = follow_map(topology)
    actions: dict[Key, tuple[str, str]] = {}
    for key, spec in sorted(wanted.items(), key=lambda kv: (position[kv[0][0]], kv[0][1])):
        node, index, kind = key
        if key not in have:
            action, reason = (CONFIGURE if kind == "software" else CREATE), "new"
        else:
            action, reason = _change(kind, have[key], spec)
        compute = follows[node]
        if kind == "software" and action == NOOP and (compute, index) in changed_hosts:
            action, reason = CONFIGURE, f"host {compute}[{index}] is new or replaced"
        if kind == "compute" and action in (CREATE, REPLACE):
            changed_hosts.add((node, index))
        actions[key] = (action, reason)
    _reattach(wanted, actions)
    steps = _forward_steps(topology, wanted, actions, estimate)
    steps = _delete_steps(topology, wanted, have, estimate) + steps
    ids = tuple(s.id for s in steps)
    steps.append(Step(id="outputs", action=NOOP, kind="outputs", node="outputs",
                      depends_on=ids, reason="resolve outputs"))
    return Plan(deployment=deployment, template=topology.file, template_digest=template_digest,
                base_serial=base_serial, steps=tuple(steps), placement=placement.to_dict(),
                inputs=inputs or {}, sites_file=sites_file, deployment_id=deployment_id,
                estimated_duration_s=critical_path(steps),
                remote_imports=dict(remote_imports or {}))


def _reattach(wanted: dict, actions: dict) -> None:
    """An attachment follows its server and its volume: when either is created anew (lost
    outside the orchestrator) or replaced, the new one is attached again."""
    for key, (action, _) in list(actions.items()):
        if key[2] != "attachment" or action not in (NOOP, UPDATE):
            continue
        spec, index = wanted[key], key[1]
        volume = (spec["volume"], index, "volume")
        if volume not in actions:  # one volume shared by every instance
            volume = (spec["volume"], 0, "volume")
        for other in ((spec["server"], index, "compute"), volume):
            if actions.get(other, (NOOP,))[0] in (CREATE, REPLACE):
                actions[key] = (CREATE, f"{other[2]} {other[0]}[{other[1]}] is new or "
                                "replaced: attach again")
                break


def step_id(action: str, kind: str, node: str, index: int) -> str:
    verb = "delete" if action == DELETE else ("configure" if kind == "software" else "apply")
    return f"{verb} {kind} {node}[{index}]"


def _forward_steps(topology, wanted, actions, estimate) -> list[Step]:
    instances: dict[str, list[Key]] = {}
    for key in actions:
        if key[2] != "attachment":  # attachments follow their server and volume
            instances.setdefault(key[0], []).append(key)
    steps = []
    for key, (action, reason) in actions.items():
        node, index, kind = key
        deps = []
        for rel in topology.relationships:
            if rel.source != node or rel.target not in instances:
                continue
            targets = instances[rel.target]
            aligned = [t for t in targets if t[1] == index]
            for target in (aligned if len(targets) > 1 or aligned else targets):
                deps.append(step_id(actions[target][0], target[2], *target[:2]))
        spec = wanted[key]
        if kind == "software" and (node, index, "compute") in actions:  # configures itself
            deps.append(step_id(actions[(node, index, "compute")][0], "compute", node, index))
        if kind == "attachment":
            volume = (spec["volume"], index, "volume")
            if volume not in actions:  # one volume shared by every instance
                volume = (spec["volume"], 0, "volume")
            deps = [step_id(actions[t][0], t[2], t[0], t[1]) for t in
                    ((spec["server"], index, "compute"), volume) if t in actions]
        site = spec.get("site")
        steps.append(Step(
            id=step_id(action, kind, node, index), action=action, kind=kind, node=node,
            index=index, site=site, details=spec, depends_on=tuple(dict.fromkeys(deps)),
            reason=reason, estimate_s=0.0 if action == NOOP else estimate(site, kind, action)))
    return steps


def _delete_steps(topology, wanted, have, estimate) -> list[Step]:
    doomed = [e for key, e in have.items() if key not in wanted]
    if not doomed:
        return []
    position = {name: i for i, name in enumerate(topology.order)}
    doomed.sort(key=lambda e: (-position.get(e.node, len(position)), -e.index))
    needed_by: dict[str, set[str]] = {}
    for rel in topology.relationships:
        needed_by.setdefault(rel.target, set()).add(rel.source)
    steps = []
    for old in doomed:
        node = topology.nodes.get(old.node)
        if node is None:
            reason = "node removed from the template"
        elif node.compute is not None:
            reason = f"scaled in to {node.compute.scaling.count}"
        else:
            reason = "its host is removed"
        # what needs this resource goes first (the reverse of creation); attachments
        # go before the servers and volumes they join
        if old.kind == "attachment":
            deps = []
        else:
            deps = sorted(step_id(DELETE, e.kind, e.node, e.index) for e in doomed
                          if (e.kind != "attachment" and e.node in needed_by.get(old.node, ()))
                          or (e.kind == "attachment" and e.index == old.index and old.node in
                              (e.spec.get("server"), e.spec.get("volume"))))
        steps.append(Step(
            id=step_id(DELETE, old.kind, old.node, old.index), action=DELETE, kind=old.kind,
            node=old.node, index=old.index, site=old.site,
            details={"provider_id": old.provider_id, **old.spec},
            depends_on=tuple(deps), reason=reason,
            estimate_s=estimate(old.site, old.kind, DELETE)))
    return steps

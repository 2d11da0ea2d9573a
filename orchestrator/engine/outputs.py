"""Resolve deferred functions (get_attribute, get_operation_output, concat/join/token
over them) against the deployment's live state."""
from __future__ import annotations

from orchestrator.topology.model import Topology
from orchestrator.tosca.functions import Deferred, resolve_deferred, to_plain, walk
from orchestrator.tosca.secret import is_secret, taint, tainted, untaint


def _instances(rows, node: str) -> list:
    found = [r for r in rows if r.node == node and r.status not in ("deleted", "deleting")]
    # a node's own resource first (compute/volume...), software rows otherwise
    primary = [r for r in found if r.kind != "software"] or found
    return sorted(primary, key=lambda r: r.index)


def attribute_of(rows, topology: Topology, node: str, path: list):
    """Value of get_attribute [node, attr, ...] over every instance of ``node``.

    One instance gives its value; several give a list (index it with a further
    integer, as INDIGO templates do with [vm, public_address, 0])."""
    if not path:
        return None
    instances = _instances(rows, node)
    name = path[0]
    values = []
    for row in instances:
        attributes = dict(row.attributes or {})
        attributes.setdefault("tosca_name", node)
        attributes.setdefault("tosca_id", row.provider_id or f"{node}[{row.index}]")
        attributes.setdefault("state", row.status)
        if name in attributes:
            values.append(attributes[name])
        elif node in topology.nodes and name in topology.nodes[node].properties:
            values.append(topology.nodes[node].properties[name])
    if not values:
        if node in topology.nodes and name in topology.nodes[node].properties:
            values = [topology.nodes[node].properties[name]]
        else:
            return None
    rest = list(path[1:])
    value = values[0] if len(values) == 1 else values
    if rest and isinstance(rest[0], int) and not isinstance(value, list):
        if rest[0] not in (0, -1):  # [vm, public_address, 0] on a single value
            return None
        rest = rest[1:]
    return to_plain(walk(value, rest))


def _through_requirement(topology: Topology, node: str, path: list) -> str | None:
    """The target of ``node``'s requirement named ``path[0]``, when the path goes through
    a requirement rather than naming one of the node's own attributes."""
    if len(path) < 2 or not isinstance(path[0], str) or node not in topology.nodes:
        return None
    own = topology.nodes[node]
    if path[0] in own.properties or path[0] in own.capabilities:
        return None
    for rel in topology.relationships:
        if rel.source == node and rel.requirement == path[0]:
            return rel.target
    return None


def make_lookup(rows, topology: Topology):
    def lookup(ref: Deferred):
        if ref.function == "get_attribute":
            node, path = ref.node, list(ref.args[1:])
            target = _through_requirement(topology, node, path)
            if target is not None:  # [SELF, requirement, attribute...]: the target's
                node, path = target, path[1:]
            value = attribute_of(rows, topology, node, path)
            return taint(value) if _secret_attribute(rows, topology, node, path) else value
        if ref.function == "get_operation_output":
            _, interface, operation, output = ref.args
            for row in _instances(rows, ref.node):
                outputs = (row.attributes or {}).get("operation_outputs", {})
                value = outputs.get(f"{interface}.{operation}", {}).get(output)
                marked = (row.attributes or {}).get(SECRET_ATTRIBUTES) or ()
                if value is not None:
                    return taint(value) if is_secret(output) or output in marked else value
            return None
        return None

    return lookup


def _secret_path(path: list) -> bool:
    """An attribute (or a key into one) named like a secret: ``admin_password``."""
    return any(isinstance(step, str) and is_secret(step) for step in path)


#: in a row's attributes: those of its attributes that hold a secret (the configurator marks
#: the operation outputs that have a secret of the operation's inputs in them)
SECRET_ATTRIBUTES = "secret_attributes"


def _secret_attribute(rows, topology: Topology, node: str, path: list) -> bool:
    """The attribute is secret: named like one, declared secret by the node's type, or
    marked secret at run time on one of the node's instances."""
    if _secret_path(path):
        return True
    name = path[0] if path else None
    declared = topology.nodes.get(node) if isinstance(topology.nodes, dict) else None
    if name in getattr(declared, "secret_attributes", ()):
        return True
    return any(name in ((row.attributes or {}).get(SECRET_ATTRIBUTES) or ())
               for row in _instances(rows, node))


def resolve_outputs(topology: Topology, rows) -> dict:
    """The outputs' values; those computed from a secret (an input, a property, an attribute
    or an operation output) hold :class:`~orchestrator.tosca.secret.Secret` strings."""
    lookup = make_lookup(rows, topology)
    return {o.name: to_plain(resolve_deferred(o.value, lookup)) for o in topology.outputs}


def secret_output_names(outputs: dict) -> list[str]:
    """The outputs whose value is secret: computed from a secret, or named like one."""
    return [name for name, value in outputs.items()
            if tainted(value) or (is_secret(name) and value not in (None, "", {}, []))]


def split_outputs(outputs: dict, mask: str) -> tuple[dict, dict]:
    """(the outputs to store and show, each secret one replaced by ``mask``; the secret
    ones, in plain strings, to seal)."""
    names = set(secret_output_names(outputs))
    shown = {k: (mask if k in names else v) for k, v in outputs.items()}
    return shown, {k: untaint(v) for k, v in outputs.items() if k in names}


def show_outputs(live: dict, stored: dict, sealed: dict, mask: str,
                 reveal: bool) -> tuple[dict, list[str]]:
    """(the outputs to show, the names of those revealed). ``live`` are resolved now (their
    secret ones from a template re-read without the secret inputs, which are never stored,
    so only their sealed copy is right), ``stored`` as the last apply kept them (secret ones
    masked), ``sealed`` the secret ones opened (empty unless revealing)."""
    names = set(secret_output_names(live)) | set(sealed) | {
        k for k, v in stored.items() if v == mask}
    shown, revealed = {}, []
    for key, value in live.items():
        if key not in names:
            shown[key] = untaint(value)
        elif reveal and (key in sealed or tainted(value)):
            shown[key] = sealed[key] if key in sealed else untaint(value)
            revealed.append(key)
        else:
            shown[key] = mask
    return shown, revealed


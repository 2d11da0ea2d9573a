"""Turn a validated Template into a Topology, reading compute requirements from our
types (``orchestrator.*``) and from the INDIGO-DataCloud names alike."""
from __future__ import annotations

import math

from orchestrator.diagnostics import Diagnostics, Location
from orchestrator.topology.graph import dependency_order
from orchestrator.topology.model import (
    RELATIONSHIP_KINDS,
    ComputeRequirements,
    CvmfsSpec,
    GpuSpec,
    Group,
    InputSpec,
    Node,
    Operation,
    OsSpec,
    Output,
    Policy,
    PortSpec,
    Relationship,
    ScalingSpec,
    Topology,
    VolumeSpec,
)
from orchestrator.topology.secrets import is_secret
from orchestrator.tosca.functions import Deferred, to_plain
from orchestrator.tosca.template import NodeTemplate, Template
from orchestrator.tosca.values import scalar_to

CVMFS_TYPES = ("orchestrator.nodes.CVMFS",)


def _static(value):
    return None if isinstance(value, Deferred) else value


def _num(value) -> float | None:
    value = _static(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _size(value, unit: str) -> float | None:
    value = _static(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # a bare number is taken to be in the target unit
    converted = scalar_to(value, "scalar-unit.size", unit)
    return math.ceil(converted) if converted is not None else None


def _bool(value) -> bool:
    value = _static(value)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _str(value) -> str | None:
    value = _static(value)
    return None if value is None or isinstance(value, (dict, list)) else str(value)


def _any(value) -> str | None:
    """A string requirement, where "any", "none" or "" mean no requirement."""
    text = _str(value)
    return None if text is None or text.strip().lower() in ("", "any", "none", "*") else text


class _Builder:
    def __init__(self, template: Template, diagnostics: Diagnostics):
        self.t = template
        self.diags = diagnostics
        self.registry = template.registry
        self.position = {name: i for i, name in enumerate(template.nodes)}
        self.by_node: dict[str, list[Relationship]] = {}

    def index(self, rels: list[Relationship]) -> None:
        """Relationships by the nodes at either end, so lookups stay linear overall."""
        for rel in rels:
            self.by_node.setdefault(rel.source, []).append(rel)
            if rel.target != rel.source:
                self.by_node.setdefault(rel.target, []).append(rel)

    def is_a(self, node: NodeTemplate, type_name: str) -> bool:
        return self.registry.is_a("node_types", node.type, type_name)

    def kind(self, node: NodeTemplate) -> str:
        for type_name, kind in (("tosca.nodes.Compute", "compute"),
                                ("tosca.nodes.BlockStorage", "storage"),
                                ("tosca.nodes.Storage.BlockStorage", "storage"),
                                ("tosca.nodes.network.Network", "network"),
                                ("tosca.nodes.network.Port", "port")):
            if self.registry.resolve("node_types", type_name) and self.is_a(node, type_name):
                return kind
        return "software" if self.t.host_of(node.name) else "other"

    def relationships(self) -> list[Relationship]:
        result = []
        for node in self.t.nodes.values():
            for req in node.requirements:
                if req.target is None:
                    continue
                kind = "DependsOn"
                for type_name in self.registry.chain("relationship_types", req.relationship or ""):
                    if type_name in RELATIONSHIP_KINDS:
                        kind = RELATIONSHIP_KINDS[type_name]
                        break
                if req.name == "host" and req.relationship is None:
                    kind = "HostedOn"
                ops = tuple(Operation(i, o, op.get("implementation"), dict(op.get("inputs") or {}))
                            for i, ops_ in req.interfaces.items() for o, op in ops_.items())
                result.append(Relationship(node.name, req.target, req.name, req.relationship,
                                           kind, req.capability, dict(req.properties), ops))
        return result

    def compute(self, node: NodeTemplate, rels: list[Relationship]) -> ComputeRequirements:
        caps = node.capabilities
        host = caps.get("host", {})
        os_ = caps.get("os", {})
        endpoint = caps.get("endpoint", {})
        scalable = caps.get("scalable", {})
        gpus = host.get("gpus") if isinstance(host.get("gpus"), dict) else {}
        gpu = GpuSpec(
            count=int(_num(gpus.get("count")) or _num(host.get("num_gpus")) or 0),
            vendor=_any(gpus.get("vendor") or host.get("gpu_vendor")),
            model=_any(gpus.get("model") or host.get("gpu_model")),
            mig_profile=_any(gpus.get("mig_profile")))
        count = _num(scalable.get("count"))
        if count is None:
            count = _num(scalable.get("default_instances"))
        scaling = ScalingSpec(
            count=int(count if count is not None else 1),
            min_instances=int(_num(scalable.get("min_instances")) or 0) if
            scalable.get("min_instances") is not None else 1,
            max_instances=int(_num(scalable.get("max_instances"))) if
            _num(scalable.get("max_instances")) is not None else None,
            removal_list=tuple(str(x) for x in (_static(scalable.get("removal_list")) or [])))
        if scaling.max_instances is not None and scaling.max_instances < scaling.count:
            # the normative default (max 1) is no limit the author meant to set
            scaling = ScalingSpec(scaling.count, min(scaling.min_instances, scaling.count),
                                  scaling.count, scaling.removal_list)
        operating = OsSpec(
            type=_str(os_.get("type")), distribution=_str(os_.get("distribution")),
            version=_str(os_.get("version")), architecture=_str(os_.get("architecture")),
            image=_str(os_.get("image")),
            gpu_driver=_static(os_.get("gpu_driver")),
            cuda_version=_str(os_.get("cuda_version") or os_.get("cuda_min_version")))
        return ComputeRequirements(
            cpus=_num(host.get("num_cpus")),
            memory_mib=_size(host.get("mem_size"), "MiB"),
            disk_gib=_size(host.get("disk_size"), "GiB"),
            gpus=gpu,
            infiniband=_bool(host.get("infiniband")) or _bool(host.get("infiniband_support")),
            sgx=_bool(host.get("sgx")),
            cvmfs=self.cvmfs(node, caps.get("cvmfs", {}), rels),
            os=operating,
            preemptible=_bool(host.get("preemptible")) or _bool(host.get("preemtible_instance")),
            instance_type=_str(host.get("instance_type")),
            public_ip=_bool(endpoint.get("public_ip")) or
            str(_static(endpoint.get("network_name")) or "").upper() == "PUBLIC",
            ports=self.ports(endpoint),
            networks=self.networks(node, rels),
            volumes=self.volumes(node, rels),
            scaling=scaling)

    def cvmfs(self, node: NodeTemplate, cap: dict, rels: list[Relationship]) -> CvmfsSpec:
        repos = list(_static(cap.get("repositories")) or [])
        proxy = _str(cap.get("proxy"))
        quota = _size(cap.get("quota"), "MiB")
        hosted = {r.source for r in self.by_node.get(node.name, ())
                  if r.kind == "HostedOn" and r.target == node.name}
        for name in sorted(hosted, key=self.position.__getitem__):
            component = self.t.nodes[name]
            if any(self.registry.resolve("node_types", t) and self.is_a(component, t)
                   for t in CVMFS_TYPES):
                repos += list(_static(component.properties.get("repositories")) or [])
                proxy = proxy or _str(component.properties.get("proxy"))
                quota = quota or _size(component.properties.get("quota"), "MiB")
        unique = tuple(dict.fromkeys(str(r) for r in repos))
        return CvmfsSpec(unique, proxy, quota)

    @staticmethod
    def ports(endpoint: dict) -> tuple[PortSpec, ...]:
        ports = _static(endpoint.get("ports"))
        result = []
        for name, spec in (ports.items() if isinstance(ports, dict) else []):
            if not isinstance(spec, dict):
                continue
            port = _num(spec.get("port", spec.get("source", spec.get("target"))))
            if port is None:
                continue
            end = _num(spec.get("end_port"))
            source_range = _static(spec.get("source_range"))
            if end is None and isinstance(source_range, list) and len(source_range) == 2:
                port, end = _num(source_range[0]) or port, _num(source_range[1])
            result.append(PortSpec(int(port), str(_str(spec.get("protocol")) or "tcp").lower(),
                                   int(end) if end is not None else None,
                                   _str(spec.get("remote_cidr")) or "0.0.0.0/0", str(name)))
        return tuple(result)

    def networks(self, node: NodeTemplate, rels: list[Relationship]) -> tuple[str, ...]:
        ports = [r.source for r in self.by_node.get(node.name, ())
                 if r.kind == "BindsTo" and r.target == node.name]
        return tuple(r.target for port in ports for r in self.by_node.get(port, ())
                     if r.kind == "LinksTo" and r.source == port)

    def volumes(self, node: NodeTemplate, rels: list[Relationship]) -> tuple[VolumeSpec, ...]:
        result = []
        for rel in self.by_node.get(node.name, ()):
            storage = None
            if rel.kind == "AttachesTo" and rel.source == node.name:
                storage = self.t.nodes[rel.target]
            elif rel.kind == "AttachesTo" and rel.target == node.name:
                storage = self.t.nodes[rel.source]
            if storage is None:
                continue
            props = storage.properties
            result.append(VolumeSpec(
                node=storage.name, size_gib=_size(props.get("size"), "GiB"),
                location=_str(rel.properties.get("location")),
                device=_str(rel.properties.get("device")),
                fs_type=_str(rel.properties.get("fs_type") or props.get("fs_type")),
                volume_type=_str(props.get("volume_type") or props.get("type")),
                volume_id=_str(props.get("volume_id"))))
        return tuple(result)

    def node(self, node: NodeTemplate, rels: list[Relationship]) -> Node:
        kind = self.kind(node)
        ops = tuple(Operation(iface, name, op.get("implementation"), dict(op.get("inputs") or {}))
                    for iface, ops_ in node.interfaces.items() for name, op in ops_.items())
        return Node(
            name=node.name, type=node.type, types=self.registry.chain("node_types", node.type),
            kind=kind, properties=dict(node.properties),
            capabilities=dict(node.capabilities), operations=ops,
            artifacts=to_plain(node.artifacts), host=self.t.host_of(node.name),
            compute=self.compute(node, rels) if kind == "compute" else None,
            file=node.loc.file, line=node.loc.line, implementation=node.implementation,
            secret_attributes=tuple(sorted(
                name for name, schema in self.registry.attributes("node_types",
                                                                  node.type).items()
                if is_secret(name, schema))))

    def inputs(self) -> tuple[InputSpec, ...]:
        result = []
        for name, definition in self.t.inputs.items():
            schema = definition.schema
            constraints = schema.get("constraints")
            result.append(InputSpec(
                name=name, type=_str(schema.get("type")), description=definition.description,
                default=to_plain(schema.get("default")),
                required=schema.get("required", True) is not False,
                constraints=tuple(to_plain(constraints)) if isinstance(constraints, list) else (),
                value=to_plain(definition.value), secret=is_secret(name, schema)))
        return tuple(result)


def build_topology(template: Template, diagnostics: Diagnostics) -> Topology | None:
    """The Topology of a validated template, or None when its graph has a cycle."""
    builder = _Builder(template, diagnostics)
    rels = builder.relationships()
    builder.index(rels)
    nodes = {name: builder.node(node, rels) for name, node in template.nodes.items()}
    locations = {name: node.loc for name, node in template.nodes.items()}
    order = dependency_order(list(nodes), [(r.source, r.target) for r in rels], diagnostics,
                             locations)
    if order is None:
        return None
    return Topology(
        file=template.file, version=template.version,
        description=template.description.strip() if isinstance(template.description, str)
        else None,
        metadata=to_plain(template.metadata), inputs=builder.inputs(), nodes=nodes,
        relationships=tuple(rels),
        outputs=tuple(Output(n, o["value"], o.get("description"))
                      for n, o in template.outputs.items()),
        policies=tuple(Policy(p["name"], p["type"], tuple(p["targets"]),
                              to_plain(p["properties"])) for p in template.policies),
        groups=tuple(Group(n, g["type"], tuple(g["members"])) for n, g in template.groups.items()),
        order=tuple(order))


__all__ = ["build_topology", "is_secret", "Location"]

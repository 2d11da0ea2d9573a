"""The topology: what the rest of the orchestrator works with, as frozen values.

Everything here is plain data with a JSON form (``to_dict``); sizes are normalised
(memory in MiB, disk in GiB) so placement can compare numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.tosca.functions import Deferred, to_plain

FORMAT_VERSION = 1

RELATIONSHIP_KINDS = {
    "tosca.relationships.HostedOn": "HostedOn",
    "tosca.relationships.ConnectsTo": "ConnectsTo",
    "tosca.relationships.AttachesTo": "AttachesTo",
    "tosca.relationships.network.LinksTo": "LinksTo",
    "tosca.relationships.network.BindsTo": "BindsTo",
    "tosca.relationships.DependsOn": "DependsOn",
}


def _plain(obj) -> Any:
    if isinstance(obj, Deferred):
        return obj.to_json()
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return to_plain(obj)


class _Serialisable:
    def to_dict(self) -> dict:
        return _plain(self)


@dataclass(frozen=True)
class GpuSpec(_Serialisable):
    count: int = 0
    vendor: str | None = None
    model: str | None = None
    mig_profile: str | None = None


@dataclass(frozen=True)
class OsSpec(_Serialisable):
    type: str | None = None
    distribution: str | None = None
    version: str | None = None
    architecture: str | None = None
    image: str | None = None
    gpu_driver: str | bool | None = None
    cuda_version: str | None = None


@dataclass(frozen=True)
class PortSpec(_Serialisable):
    port: int
    protocol: str = "tcp"
    end_port: int | None = None
    remote_cidr: str = "0.0.0.0/0"
    name: str | None = None


@dataclass(frozen=True)
class VolumeSpec(_Serialisable):
    node: str
    size_gib: float | None = None
    location: str | None = None
    device: str | None = None
    fs_type: str | None = None
    volume_type: str | None = None
    volume_id: str | None = None


@dataclass(frozen=True)
class CvmfsSpec(_Serialisable):
    repositories: tuple[str, ...] = ()
    proxy: str | None = None
    quota_mib: float | None = None


@dataclass(frozen=True)
class ScalingSpec(_Serialisable):
    count: int = 1
    min_instances: int = 1
    max_instances: int | None = None
    removal_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComputeRequirements(_Serialisable):
    cpus: float | None = None
    memory_mib: float | None = None
    disk_gib: float | None = None
    gpus: GpuSpec = field(default_factory=GpuSpec)
    infiniband: bool = False
    sgx: bool = False
    cvmfs: CvmfsSpec = field(default_factory=CvmfsSpec)
    os: OsSpec = field(default_factory=OsSpec)
    preemptible: bool = False
    instance_type: str | None = None
    public_ip: bool = False
    ports: tuple[PortSpec, ...] = ()
    networks: tuple[str, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    scaling: ScalingSpec = field(default_factory=ScalingSpec)


@dataclass(frozen=True)
class Operation(_Serialisable):
    interface: str
    name: str
    implementation: str | None
    inputs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Relationship(_Serialisable):
    source: str
    target: str
    requirement: str
    type: str | None
    kind: str  # HostedOn, ConnectsTo, AttachesTo, LinksTo, BindsTo, DependsOn
    capability: str | None = None
    properties: dict = field(default_factory=dict)
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True)
class Node(_Serialisable):
    name: str
    type: str
    types: tuple[str, ...]  # the type and its ancestors, nearest first
    kind: str  # compute, software, storage, network, port, other
    properties: dict = field(default_factory=dict)
    capabilities: dict = field(default_factory=dict)
    operations: tuple[Operation, ...] = ()
    artifacts: dict = field(default_factory=dict)
    host: str | None = None
    compute: ComputeRequirements | None = None
    file: str = ""
    line: int = 0
    #: "native: <type>" when its operations are our playbooks standing in for the type's own
    implementation: str | None = None
    #: attributes its type declares secret (metadata secret: true, or a secret-looking name)
    secret_attributes: tuple[str, ...] = ()

    def is_a(self, type_name: str) -> bool:
        return type_name in self.types


@dataclass(frozen=True)
class InputSpec(_Serialisable):
    name: str
    type: str | None
    description: str | None = None
    default: Any = None
    required: bool = True
    constraints: tuple = ()
    value: Any = None
    secret: bool = False


@dataclass(frozen=True)
class Output(_Serialisable):
    name: str
    value: Any
    description: str | None = None


@dataclass(frozen=True)
class Policy(_Serialisable):
    name: str
    type: str | None
    targets: tuple[str, ...]
    properties: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Group(_Serialisable):
    name: str
    type: str | None
    members: tuple[str, ...]


@dataclass(frozen=True)
class Topology(_Serialisable):
    file: str
    version: str | None
    description: str | None
    metadata: dict
    inputs: tuple[InputSpec, ...]
    nodes: dict  # name -> Node, in template order
    relationships: tuple[Relationship, ...]
    outputs: tuple[Output, ...]
    policies: tuple[Policy, ...]
    groups: tuple[Group, ...]
    order: tuple[str, ...]  # dependency order: targets before the nodes that need them

    def to_dict(self) -> dict:
        data = _plain(self)
        data["format_version"] = FORMAT_VERSION
        return data

    def compute_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.compute is not None]

    def hosted_on(self, name: str) -> list[str]:
        return [r.source for r in self.relationships if r.kind == "HostedOn" and r.target == name]

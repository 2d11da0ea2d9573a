"""The topology model: nodes, relationships and compute requirements as frozen values."""
from orchestrator.topology.build import build_topology, is_secret
from orchestrator.topology.model import (
    ComputeRequirements,
    CvmfsSpec,
    GpuSpec,
    Node,
    OsSpec,
    PortSpec,
    Relationship,
    ScalingSpec,
    Topology,
    VolumeSpec,
)

__all__ = ["build_topology", "is_secret", "ComputeRequirements", "CvmfsSpec", "GpuSpec", "Node",
           "OsSpec", "PortSpec", "Relationship", "ScalingSpec", "Topology", "VolumeSpec"]

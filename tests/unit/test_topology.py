"""Topology building: compute requirements from our types and from INDIGO names,
hosting, dependency order and cycles."""
import pytest

from orchestrator import service
from orchestrator.diagnostics import Diagnostics
from orchestrator.topology.graph import dependency_order
from tests.conftest import FIXTURES, ROOT


def _topology(path, *sets):
    report = service.validate(str(path), sets=sets)
    assert report.valid, [d.render() for d in report.diagnostics]
    return report.topology


def test_indigo_gpu_vm_offline():
    topo = _topology(FIXTURES / "indigo" / "ml-infn-gpu-vm.yaml")
    vm = topo.nodes["vm_server"].compute
    assert (vm.cpus, vm.gpus.count, vm.gpus.vendor, vm.gpus.model) == (8, 2, "NVIDIA", "A100")
    assert vm.memory_mib == 30518  # 32 GB (decimal, as TOSCA defines GB) in MiB
    assert vm.public_ip and vm.os.distribution == "ubuntu" and vm.os.cuda_version == "12.0"
    assert [(p.port, p.remote_cidr) for p in vm.ports] == [(22, "131.154.0.0/16"),
                                                          (8888, "0.0.0.0/0")]
    (volume,) = vm.volumes
    assert (volume.node, volume.location, volume.device) == ("my_block_storage", "/data", "vdb")
    assert topo.order.index("my_block_storage") < topo.order.index("vm_server")
    (policy,) = topo.policies
    assert policy.type == "tosca.policies.indigo.SlaPlacement"
    assert policy.properties["sla_id"] == "5e1daa7c2a8a5c7b1c8b4567"


def test_indigo_slurm_infiniband_workers():
    topo = _topology(FIXTURES / "indigo" / "slurm-ib-cluster.yaml", "wn_num=6")
    wn = topo.nodes["lrms_wn"].compute
    assert wn.infiniband and wn.gpus.count == 4 and wn.gpus.model == "V100"
    assert wn.scaling.count == 6
    assert topo.nodes["wn_node"].host == "lrms_wn"
    assert topo.hosted_on("lrms_server") == ["lrms_front_end"]


def test_catalogue_jupyterhub_has_cvmfs_and_gpus():
    topo = _topology(ROOT / "templates" / "jupyterhub-gpu-cvmfs.yaml",
                     "oidc_client_id=hub", "oidc_client_secret=s3cret")
    (vm,) = topo.compute_nodes()
    req = vm.compute
    assert req.gpus.count >= 1 and req.gpus.vendor == "NVIDIA"
    assert set(req.cvmfs.repositories) >= {"cms.cern.ch", "sft.cern.ch", "atlas.cern.ch"}
    assert req.volumes, "the persistent home volume is attached"
    kinds = {n.name: n.kind for n in topo.nodes.values()}
    assert "software" in kinds.values()


def test_catalogue_slurm_infiniband():
    topo = _topology(ROOT / "templates" / "slurm-infiniband-gpu.yaml", "site=cnaf")
    workers = [n.compute for n in topo.compute_nodes() if n.compute.infiniband]
    assert workers and all(w.gpus.count >= 1 for w in workers)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "templates").glob("*.yaml")))
def test_catalogue_templates_validate_with_their_defaults(name):
    report = service.validate(name)
    assert report.valid, [d.render() for d in report.diagnostics]
    topo = report.topology
    assert topo.description, "catalogue templates describe themselves"
    for spec in topo.inputs:
        assert spec.description, f"input {spec.name} needs a description for the dashboard"


def test_dependency_cycle_names_the_nodes():
    diags = Diagnostics()
    order = dependency_order(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "a"),
                                                    ("d", "a")], diags)
    assert order is None
    (diag,) = diags.items
    assert diag.code == "dependency-cycle" and "a -> b -> c -> a" in diag.message


def test_dependency_order_is_deterministic():
    diags = Diagnostics()
    edges = [("app", "vm"), ("db", "vm"), ("app", "db")]
    assert dependency_order(["app", "db", "vm"], edges, diags) == ["vm", "db", "app"]

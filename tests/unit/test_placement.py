"""Placement: GPU vendor/model matching, InfiniBand, images, quotas, policies, reasons."""
import pytest

from orchestrator import service
from orchestrator.errors import PlacementError
from orchestrator.placement import place
from orchestrator.providers.base import Flavor, GpuOffer, Image, Offer, Quotas
from orchestrator.sites import Site

T4 = Flavor("g1.t4", 8, 32768, 100, GpuOffer(1, "NVIDIA", "T4"))
A100x1 = Flavor("g1.a100x1", 16, 65536, 200, GpuOffer(1, "NVIDIA", "A100"))
A100x2 = Flavor("g1.a100x2", 32, 131072, 200, GpuOffer(2, "NVIDIA", "A100"), infiniband=True)
A100x4 = Flavor("g1.a100x4", 64, 262144, 400, GpuOffer(4, "NVIDIA", "A100-80GB"),
                infiniband=True)
SMALL = Flavor("m1.small", 2, 4096, 20)
LARGE = Flavor("m1.large", 8, 16384, 80)
IB = Flavor("hpc.ib", 32, 131072, 100, infiniband=True)
UBUNTU = Image("ubuntu-22.04", distribution="ubuntu", version="22.04")
UBUNTU_GPU = Image("ubuntu-22.04-cuda", distribution="ubuntu", version="22.04.3",
                   gpu_driver="535", cuda_version="12.2")
ROCKY = Image("rocky-9", distribution="rocky", version="9")

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\nimports: [orchestrator/all.yaml]\n"


def _topo(write, body: str, *sets):
    path = write("t.yaml", HEADER + body)
    report = service.validate(path, sets=sets)
    assert report.valid, [d.render() for d in report.diagnostics]
    return report.topology


def _vm(gpus="", extra="", os_props="{distribution: ubuntu, version: '22.04'}", count=1):
    return f"""
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: 4
            mem_size: 8 GiB
            {gpus}
            {extra}
        os:
          properties: {os_props}
        scalable:
          properties: {{count: {count}}}
"""


def _sites(*specs):
    sites, offers = [], {}
    for name, flavors, images, kwargs in specs:
        quotas = kwargs.pop("quotas", Quotas())
        site = Site(name=name, provider="simulated", flavors=tuple(flavors),
                    images=tuple(images), quotas=quotas, **kwargs)
        sites.append(site)
        offers[name] = Offer(site.flavors, site.images, quotas)
    return sites, offers


def test_smallest_flavor_that_fits(write):
    topo = _topo(write, _vm())
    sites, offers = _sites(("a", [LARGE, SMALL, T4], [UBUNTU, ROCKY], {}))
    placed = place(topo, sites, offers).nodes["vm"].choice
    assert placed.flavor.name == "m1.large" and placed.image.name == "ubuntu-22.04"


def test_gpu_model_and_count(write):
    topo = _topo(write, _vm("gpus: {count: 2, vendor: NVIDIA, model: A100}",
                            os_props="{distribution: ubuntu, gpu_driver: '535'}"))
    sites, offers = _sites(("a", [T4, A100x1, A100x4, A100x2, LARGE], [UBUNTU, UBUNTU_GPU],
                            {}))
    placed = place(topo, sites, offers).nodes["vm"].choice
    assert placed.flavor.name == "g1.a100x2"  # smallest with 2 x A100, not the x4
    assert placed.image.name == "ubuntu-22.04-cuda"


def test_gpu_reason_names_the_largest_gpu_flavor(write):
    topo = _topo(write, _vm("gpus: {count: 2, vendor: NVIDIA, model: A100}"))
    sites, offers = _sites(("cnaf", [T4, LARGE], [UBUNTU], {}),
                           ("recas", [LARGE], [UBUNTU], {}))
    with pytest.raises(PlacementError) as err:
        place(topo, sites, offers)
    text = str(err.value)
    assert "site cnaf: node vm: no flavor with 2 x NVIDIA A100 (largest GPU flavor: 1 x T4)" \
        in text
    assert "site recas: node vm: no flavor with 2 x NVIDIA A100 (the site has no GPU flavors)" \
        in text


def test_infiniband_and_model_word_match(write):
    topo = _topo(write, _vm("gpus: {count: 4, model: A100}", "infiniband: true"))
    sites, offers = _sites(("a", [IB, A100x2, A100x4], [UBUNTU], {}))
    assert place(topo, sites, offers).nodes["vm"].choice.flavor.name == "g1.a100x4"
    topo = _topo(write, _vm("", "infiniband: true"))
    assert place(topo, sites, offers).nodes["vm"].choice.flavor.name == "hpc.ib"
    sites, offers = _sites(("b", [LARGE], [UBUNTU], {}))
    with pytest.raises(PlacementError, match="no flavor with InfiniBand"):
        place(topo, sites, offers)


def test_no_gpu_request_avoids_gpu_flavors(write):
    topo = _topo(write, _vm())
    sites, offers = _sites(("a", [A100x1, LARGE], [UBUNTU], {}))
    assert place(topo, sites, offers).nodes["vm"].choice.flavor.name == "m1.large"


def test_image_requirements(write):
    topo = _topo(write, _vm(os_props="{distribution: ubuntu, cuda_version: '12.0'}"))
    sites, offers = _sites(("a", [LARGE], [UBUNTU, UBUNTU_GPU], {}))
    assert place(topo, sites, offers).nodes["vm"].choice.image.name == "ubuntu-22.04-cuda"
    topo = _topo(write, _vm(os_props="{distribution: debian, version: '12'}"))
    with pytest.raises(PlacementError, match="no image with debian 12"):
        place(topo, sites, offers)
    topo = _topo(write, _vm(os_props="{image: rocky-9}"))
    sites, offers = _sites(("a", [LARGE], [UBUNTU, ROCKY], {}))
    assert place(topo, sites, offers).nodes["vm"].choice.image.name == "rocky-9"


def test_ranking_failover_and_quotas(write):
    topo = _topo(write, _vm(count=3))
    sites, offers = _sites(
        ("low", [LARGE], [UBUNTU], {"priority": 1}),
        ("high", [LARGE], [UBUNTU], {"priority": 10, "quotas": Quotas(instances=2)}),
        ("mid", [LARGE], [UBUNTU], {"priority": 5}))
    placement = place(topo, sites, offers)
    assert placement.site == "mid"  # "high" has room for 2 of the 3 instances only
    assert placement.ranked_sites == ("mid", "low")
    assert [c.site for c in placement.nodes["vm"].failover] == ["high", "low"]
    assert any("quota instances: 3 needed, 2 left" in r for r in placement.rejected["high"])


def test_quota_sum_over_deployment(write):
    topo = _topo(write, _vm(count=2) + """
    vm2:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 4}}
""")
    sites, offers = _sites(("only", [LARGE], [UBUNTU], {"quotas": Quotas(cores=20)}))
    with pytest.raises(PlacementError, match="quota cores: 24 needed, 20 left"):
        place(topo, sites, offers)


def test_site_pinning_and_sla_policies(write):
    pinned = _vm() + """
  policies:
    - pin: {type: orchestrator.policies.Placement, properties: {site: low}, targets: [vm]}
"""
    sites, offers = _sites(("high", [LARGE], [UBUNTU], {"priority": 10}),
                           ("low", [LARGE], [UBUNTU], {"priority": 1, "sla_ids": ("sla-7",)}))
    assert place(_topo(write, pinned), sites, offers).site == "low"
    sla = _vm() + """
  policies:
    - sla: {type: orchestrator.policies.SlaPlacement, properties: {sla_id: sla-7}}
"""
    assert place(_topo(write, sla), sites, offers).site == "low"
    bad = sla.replace("sla-7", "sla-unknown")
    with pytest.raises(PlacementError, match="placement policy allows only no site"):
        place(_topo(write, bad), sites, offers)

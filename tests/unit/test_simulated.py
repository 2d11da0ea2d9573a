"""The simulated cloud (tests and benchmarks only) and the provider registry."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from orchestrator import providers
from orchestrator.errors import OrchestratorError
from orchestrator.providers import simulated
from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    Flavor,
    GpuOffer,
    Image,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    Quotas,
    ResourceSpec,
    TransientProviderError,
)
from orchestrator.providers.simulated import SimulatedProvider, api_calls, cloud_state
from orchestrator.sites import Site, load_sites

REPO = Path(__file__).resolve().parents[2]
FLAVORS = (
    Flavor("small", cpus=2, memory_mib=4096),
    Flavor("large", cpus=8, memory_mib=32768),
    Flavor("gpu", cpus=16, memory_mib=131072, gpus=GpuOffer(2, "NVIDIA", "A100"),
           infiniband=True),
)
IMAGES = (Image("ubuntu-22.04", distribution="ubuntu", version="22.04", aliases=("ubuntu",)),)


@pytest.fixture(autouse=True)
def _fresh_clouds():
    simulated.reset_all()
    yield
    simulated.reset_all()


def make_site(name: str = "sim", quotas: Quotas | None = None, **options) -> Site:
    return Site(name=name, provider="simulated", flavors=FLAVORS, images=IMAGES,
                quotas=quotas or Quotas(), options=options)


def vm(node: str = "vm", index: int = 0, flavor: str = "small", deployment: str = "d1",
       **properties) -> ResourceSpec:
    return ResourceSpec("compute", deployment, node, index, flavor, "ubuntu-22.04", properties)


def volume(node: str = "data", size: float = 10, deployment: str = "d1") -> ResourceSpec:
    return ResourceSpec("volume", deployment, node, properties={"size_gib": size})


# --- create, poll, find, update, delete -------------------------------------------------

def test_create_poll_find_update_delete():
    provider = SimulatedProvider(make_site())
    server = provider.create(vm(public_ip=True))
    assert server.provider_id == "sim-sim-1" and server.status == BUILDING
    assert server.tags["orchestrator-node"] == "vm"
    assert server.attributes["private_address"].startswith("10.")
    assert server.attributes["public_address"]
    assert server.attributes["flavor"] == "small" and server.attributes["image"] == "ubuntu-22.04"
    disk = provider.create(volume())
    other = provider.create(vm(deployment="d2"))
    assert "public_address" not in other.attributes

    polled = provider.poll([server.provider_id, disk.provider_id])
    assert {r.status for r in polled.values()} == {ACTIVE}
    assert {r.provider_id for r in provider.find("d1")} == {server.provider_id, disk.provider_id}

    resized = provider.update(server.provider_id, vm(flavor="large"))
    assert resized.attributes["flavor"] == "large" and resized.attributes["cpus"] == 8
    grown = provider.update(disk.provider_id, volume(size=20))
    assert grown.attributes["size_gib"] == 20

    provider.delete(server.provider_id)
    provider.delete(server.provider_id)  # idempotent
    provider.delete("sim-sim-404")  # never existed: not an error either
    after = provider.poll([server.provider_id, "sim-sim-404"])
    assert after[server.provider_id].status == DELETED
    assert after[server.provider_id].kind == "compute"
    assert after["sim-sim-404"].status == DELETED
    assert [r.provider_id for r in provider.find("d1")] == [disk.provider_id]


def test_create_is_idempotent_by_tags():
    site = make_site()
    provider = SimulatedProvider(site)
    first = provider.create(vm())
    again = SimulatedProvider(site).create(vm())
    assert again.provider_id == first.provider_id
    assert len(simulated.resources(site)) == 1
    assert api_calls(site)["create"] == 1
    provider.delete(first.provider_id)
    assert provider.create(vm()).provider_id != first.provider_id  # deleted: a new one


def test_unknown_flavor_or_image_is_a_provider_error():
    provider = SimulatedProvider(make_site())
    with pytest.raises(ProviderError, match="no flavor 'smal'.*did you mean 'small'"):
        provider.create(vm(flavor="smal"))
    with pytest.raises(ProviderError, match="no image 'centos-7'"):
        provider.create(ResourceSpec("compute", "d1", "vm", flavor="small", image="centos-7"))
    assert provider.create(ResourceSpec("compute", "d1", "vm", flavor="small",
                                        image="ubuntu")).attributes["image"] == "ubuntu-22.04"


def test_update_errors():
    provider = SimulatedProvider(make_site(quotas=Quotas(cores=10)))
    server = provider.create(vm())
    disk = provider.create(volume(size=10))
    with pytest.raises(QuotaExceededError, match="'cores'"):
        provider.update(server.provider_id, vm(flavor="gpu"))
    assert provider.poll([server.provider_id])[server.provider_id].attributes["flavor"] == "small"
    with pytest.raises(ProviderError, match="cannot shrink"):
        provider.update(disk.provider_id, volume(size=5))
    with pytest.raises(NotFoundError):
        provider.update("sim-sim-99", vm())


@pytest.mark.parametrize("quotas, spec, name", [
    (Quotas(instances=1), vm(index=1), "instances"),
    (Quotas(cores=3), vm(index=1), "cores"),
    (Quotas(memory_mib=6000), vm(index=1), "memory_mib"),
    (Quotas(gpus=2), vm(index=1, flavor="gpu"), "gpus"),
    (Quotas(volumes=0), volume(), "volumes"),
    (Quotas(volume_gib=5), volume(size=6), "volume_gib"),
])
def test_quota_errors_name_the_quota(quotas, spec, name):
    provider = SimulatedProvider(make_site(quotas=quotas))
    if spec.kind == "compute":
        provider.create(vm(flavor=spec.flavor))
    with pytest.raises(QuotaExceededError, match=f"quota '{name}' exceeded"):
        provider.create(spec)


def test_offer_reports_usage_and_check():
    site = make_site(quotas=Quotas(instances=10, gpus=4))
    provider = SimulatedProvider(site)
    provider.create(vm(flavor="gpu"))
    offer = provider.offer()
    assert offer.flavors == FLAVORS and offer.images == IMAGES
    assert offer.quotas.used["instances"] == 1 and offer.quotas.remaining("gpus") == 2
    result = provider.check()
    assert result.reachable and result.credentials_valid and result.offer.quotas.used["gpus"] == 2


@pytest.mark.parametrize("state_file", [False, True])
def test_quota_usage_follows_deletes_and_resizes(tmp_path, state_file):
    options = {"state_file": str(tmp_path / "cloud.json")} if state_file else {}
    site = make_site(quotas=Quotas(instances=1, cores=8), **options)
    provider = SimulatedProvider(site)
    first = provider.create(vm(index=0))
    provider.delete(first.provider_id)
    second = provider.create(vm(index=1))  # the deleted one no longer counts
    provider.update(second.provider_id, vm(index=1, flavor="large"))
    assert provider.offer().quotas.used["cores"] == 8
    simulated.reset_all()  # with a state file: recomputed from the file
    provider = SimulatedProvider(site)
    assert provider.offer().quotas.used["cores"] == (8 if state_file else 0)


def test_unreachable_and_rejected_sites():
    down = SimulatedProvider(make_site("down", unreachable=True))
    assert not down.check().reachable
    with pytest.raises(TransientProviderError, match="unreachable"):
        down.create(vm())
    denied = SimulatedProvider(make_site("denied", credentials_invalid=True)).check()
    assert denied.reachable and not denied.credentials_valid


def test_bad_options_are_refused():
    with pytest.raises(ProviderError, match="did you mean 'latency'"):
        SimulatedProvider(make_site(latencies={"boot": 1}))
    with pytest.raises(ProviderError, match="fault"):
        SimulatedProvider(make_site(faults=[{"operation": "create", "kind": "meteor"}]))


# --- time ---------------------------------------------------------------------------------

def test_boot_latency_building_then_active(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(simulated, "_clock", lambda: now[0])
    provider = SimulatedProvider(make_site(latency={"boot": 30}))
    server = provider.create(vm())
    assert provider.poll([server.provider_id])[server.provider_id].status == BUILDING
    now[0] += 29.9
    assert provider.find("d1")[0].status == BUILDING
    now[0] += 0.2
    assert provider.poll([server.provider_id])[server.provider_id].status == ACTIVE
    assert provider.estimate("compute", "create") == 30


def test_boot_latency_in_real_time():
    provider = SimulatedProvider(make_site(latency={"boot": 1.0}))
    server = provider.create(vm())
    assert provider.poll([server.provider_id])[server.provider_id].status == BUILDING
    deadline = time.monotonic() + 30
    while provider.poll([server.provider_id])[server.provider_id].status == BUILDING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert provider.poll([server.provider_id])[server.provider_id].status == ACTIVE


def test_api_calls_take_their_latency():
    provider = SimulatedProvider(make_site(latency={"create": 0.05, "poll": 0.02}))
    start = time.monotonic()
    server = provider.create(vm())
    provider.poll([server.provider_id])
    assert time.monotonic() - start >= 0.07
    assert provider.estimate("compute", "create") == pytest.approx(0.07)


def test_boot_error_sets_the_fault():
    provider = SimulatedProvider(make_site(boot_error={"node": "bad", "message": "No valid host"}))
    bad, good = provider.create(vm("bad")), provider.create(vm("good"))
    polled = provider.poll([bad.provider_id, good.provider_id])
    assert polled[bad.provider_id].status == ERROR
    assert polled[bad.provider_id].fault == "No valid host"
    assert polled[good.provider_id].status == ACTIVE and polled[good.provider_id].fault is None


# --- faults ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, error", [
    ("transient", TransientProviderError),
    ("quota", QuotaExceededError),
    ("permanent", ProviderError),
])
def test_faults_before_the_cloud_acts(kind, error):
    site = make_site(faults=[{"operation": "create", "kind": kind, "on_call": 2, "times": 2}])
    provider = SimulatedProvider(site)
    provider.create(vm(index=0))
    for _ in range(2):
        with pytest.raises(error) as caught:
            provider.create(vm(index=1))
        assert type(caught.value) is error
    assert provider.create(vm(index=1)).provider_id == "sim-sim-2"
    assert len(simulated.resources(site)) == 2
    assert [f["call"] for f in cloud_state(site)["faults_fired"]] == [2, 3]


def test_timeout_lets_the_cloud_act_and_a_retry_finds_it():
    site = make_site(faults=[{"operation": "create", "kind": "timeout"}])
    provider = SimulatedProvider(site)
    with pytest.raises(TransientProviderError, match="timed out"):
        provider.create(vm())
    assert len(simulated.resources(site)) == 1
    assert provider.create(vm()).provider_id == "sim-sim-1"
    assert len(simulated.resources(site)) == 1


def test_faults_filtered_by_node_count_that_nodes_calls():
    site = make_site(faults=[{"operation": "create", "kind": "transient", "on_call": 2,
                              "node": "worker"}])
    provider = SimulatedProvider(site)
    provider.create(vm("master"))
    provider.create(vm("worker", 0))
    provider.create(vm("master", 1))
    with pytest.raises(TransientProviderError):
        provider.create(vm("worker", 1))
    provider.create(vm("worker", 1))


@pytest.mark.parametrize("operation", ["poll", "find", "delete", "update"])
def test_faults_on_other_operations(operation):
    site = make_site(faults=[{"operation": operation, "kind": "transient"}])
    provider = SimulatedProvider(site)
    server = provider.create(vm())
    call = {"poll": lambda: provider.poll([server.provider_id]),
            "find": lambda: provider.find("d1"),
            "delete": lambda: provider.delete(server.provider_id),
            "update": lambda: provider.update(server.provider_id, vm(flavor="large"))}[operation]
    with pytest.raises(TransientProviderError):
        call()
    call()
    assert api_calls(site)[operation] == 2


_CRASH_SCRIPT = """
import sys
from orchestrator.providers.base import Flavor, Image, ResourceSpec
from orchestrator.providers.simulated import SimulatedProvider
from orchestrator.sites import Site
site = Site(name="sim", provider="simulated", flavors=(Flavor("small", 1, 1024),),
            images=(Image("ubuntu"),), options={"state_file": sys.argv[1],
            "faults": [{"operation": "create", "kind": sys.argv[2], "on_call": 2}]})
provider = SimulatedProvider(site)
provider.create(ResourceSpec("compute", "d1", "vm", 0, "small", "ubuntu"))
provider.create(ResourceSpec("compute", "d1", "vm", 1, "small", "ubuntu"))
print("survived")
"""


@pytest.mark.parametrize("kind, expected", [("crash_before", 1), ("crash_after", 2),
                                            ("crash", 2)])
def test_crash_kills_the_process_before_or_after_the_cloud_acts(tmp_path, kind, expected):
    state_file = tmp_path / "cloud.json"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_CRASH_SCRIPT),
                             str(state_file), kind], check=False, capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "survived" not in result.stdout
    state = json.loads(state_file.read_text())
    live = [r for r in state["resources"].values() if r["deleted_at"] is None]
    assert len(live) == expected
    assert state["calls"]["create"] == 2
    assert state["faults_fired"] == [{"operation": "create", "kind": kind, "call": 2,
                                      "node": None}]
    # a resumed orchestrator sees the same cloud, and the fault does not strike again
    site = make_site(state_file=str(state_file),
                     faults=[{"operation": "create", "kind": kind, "on_call": 2}])
    provider = SimulatedProvider(site)
    assert len(provider.find("d1")) == expected
    provider.create(vm(index=1, flavor="small"))
    assert len(provider.find("d1")) == 2


# --- persistence, counting, concurrency ----------------------------------------------------

def test_state_file_is_shared_by_provider_instances(tmp_path):
    site = make_site(state_file=str(tmp_path / "state" / "cloud.json"))
    server = SimulatedProvider(site).create(vm(public_ip=True))
    simulated.reset_all()  # forget the in-process cloud: only the file remains
    other = SimulatedProvider(site)
    assert [r.provider_id for r in other.find("d1")] == [server.provider_id]
    assert other.create(vm()).provider_id == server.provider_id
    assert other.create(vm(index=1)).provider_id == "sim-sim-2"
    on_disk = json.loads((tmp_path / "state" / "cloud.json").read_text())
    assert set(on_disk["resources"]) == {"sim-sim-1", "sim-sim-2"}
    simulated.reset(site)
    assert not (tmp_path / "state" / "cloud.json").exists()
    assert SimulatedProvider(site).find("d1") == []


def test_in_memory_cloud_is_shared_by_site_name():
    SimulatedProvider(make_site()).create(vm())
    assert len(SimulatedProvider(make_site()).find("d1")) == 1
    assert SimulatedProvider(make_site("elsewhere")).find("d1") == []


def test_poll_of_many_ids_is_one_call():
    site = make_site()
    provider = SimulatedProvider(site)
    ids = [provider.create(vm(index=i)).provider_id for i in range(50)]
    assert len(provider.poll(ids)) == 50
    provider.find("d1")
    assert api_calls(site) == {"create": 50, "poll": 1, "find": 1}


def test_threads_create_distinct_resources():
    site = make_site()
    provider = SimulatedProvider(site)
    made, errors = [], []

    def create(index: int) -> None:
        try:
            made.append(provider.create(vm(index=index)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.provider_id for r in made}) == 50
    assert len({r.attributes["private_address"] for r in made}) == 50
    assert len(simulated.resources(site)) == 50


_WORKER_SCRIPT = """
import sys
from orchestrator.providers.base import Flavor, Image, ResourceSpec
from orchestrator.providers.simulated import SimulatedProvider
from orchestrator.sites import Site
site = Site(name="sim", provider="simulated", flavors=(Flavor("small", 1, 1024),),
            images=(Image("ubuntu"),), options={"state_file": sys.argv[1]})
provider = SimulatedProvider(site)
for i in range(10):
    provider.create(ResourceSpec("compute", "d1", "worker" + sys.argv[2], i, "small", "ubuntu"))
"""


def test_processes_share_a_state_file(tmp_path):
    state_file = tmp_path / "cloud.json"
    workers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WORKER_SCRIPT),
                                 str(state_file), str(n)], cwd=REPO) for n in range(4)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    state = json.loads(state_file.read_text())
    assert len(state["resources"]) == 40 and state["calls"]["create"] == 40
    addresses = {r["attributes"]["private_address"] for r in state["resources"].values()}
    assert len(addresses) == 40


# --- registry -----------------------------------------------------------------------------

def test_registry_finds_the_simulated_provider_by_entry_point():
    assert "simulated" in providers.provider_names()
    assert providers.get_provider_class("simulated") is SimulatedProvider
    with pytest.raises(OrchestratorError, match="no provider 'simulatd' is installed; known:.*"
                                                "did you mean 'simulated'"):
        providers.get_provider_class("simulatd")


def test_provider_for_caches_per_site(write):
    path = write("sites.yaml", """
        sites:
          - name: sim-registry
            provider: simulated
            flavors: [{name: small, cpus: 1, memory_mib: 1024}]
            images: [{name: ubuntu}]
    """)
    site = load_sites(path).get("sim-registry")
    provider = providers.provider_for(site)
    assert isinstance(provider, SimulatedProvider)
    assert providers.provider_for(site) is provider
    changed = Site(**{**site.__dict__, "concurrency": 3})
    assert providers.provider_for(changed) is not provider
    server = provider.create(ResourceSpec("compute", "d1", "vm", 0, "small", "ubuntu"))
    assert providers.provider_for(changed).poll([server.provider_id])  # the same cloud
    providers.close_all()


def test_state_file_relative_to_the_sites_file(write, tmp_path):
    path = write("conf/sites.yaml", """
        sites:
          - name: sim-rel
            provider: simulated
            flavors: [{name: small, cpus: 1, memory_mib: 1024}]
            images: [{name: ubuntu}]
            options: {state_file: state/cloud.json}
    """)
    provider = SimulatedProvider(load_sites(path).get("sim-rel"))
    provider.create(ResourceSpec("compute", "d1", "vm", 0, "small", "ubuntu"))
    assert os.path.exists(tmp_path / "conf" / "state" / "cloud.json")

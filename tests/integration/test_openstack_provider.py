"""The OpenStack provider against a real OpenStack started on 127.0.0.1 for this session
(tests/e2e/openstack/: Keystone, Glance, Placement, Nova with the fake virt driver,
Neutron, Cinder; about 4.5 minutes to start, stopped by PID at the end).

Contextualisation is not exercised here: Nova's fake virt driver boots no VM, so nothing
answers SSH at a server's address and cloud-init never runs. The templates deployed have
no software operations; what Ansible would use (addresses, ssh_host, jump host facts,
the key in the user data) is checked on the servers' records instead.
"""
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import OrchestratorError
from orchestrator.providers.base import (
    ACTIVE,
    ERROR,
    ProviderError,
    QuotaExceededError,
    ResourceSpec,
)
from orchestrator.providers.openstack import OpenStackProvider
from orchestrator.providers.openstack.servers import deployment_tag
from orchestrator.sites import Site
from tests import engine_support as es
from tests.conftest import ROOT
from tests.e2e.openstack import harness

# openstacksdk 4.x warns about its own deprecations (InfluxDB metrics on every connection,
# internal methods): hidden by default outside tests, and nothing this code can change
pytestmark = [pytest.mark.filterwarnings("ignore::openstack.warnings._RemovedInSDKWarning"),
              pytest.mark.filterwarnings("ignore::openstack.warnings.OpenStackDeprecationWarning")]

def _public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode() + " orchestrator-test"


KEY = _public_key()


def _unavailable() -> str | None:
    missing = harness.missing_packages()
    if missing:
        return ("the local OpenStack's packages are not installed (run "
                f"scripts/test-deps.d/30-openstack.sh as root): {', '.join(missing)}")
    if os.geteuid() != 0:
        return "starting the local OpenStack needs root (it installs nothing, but runs rabbitmq)"
    return None


REASON = _unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(REASON + "; in CI these tests run", allow_module_level=True)


@pytest.fixture(scope="session")
def cloud():
    """The local OpenStack, started once for the session (in a directory of its own, not
    under pytest's temporary directories, which other sessions prune) and stopped by PID
    at the end."""
    if REASON:
        pytest.fail(REASON)
    base = Path(tempfile.mkdtemp(prefix="orchestrator-openstack-"))
    started = time.monotonic()
    try:
        local = harness.up(base / "cloud")
        print(f"local OpenStack ready in {time.monotonic() - started:.0f} s")
        yield local
        local.stop()
    finally:
        harness.stop(base / "cloud")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def admin(cloud):
    return cloud.connection("admin")


#: the local cloud's SQLite can make Nova drop a boot request under load: ask again soon
LOCAL_CLOUD_OPTIONS = {"reschedule_after_s": 60}


def site(cloud, name: str, project: str, **fields) -> Site:
    return Site(name=name, provider="openstack", credentials={"cloud": project},
                options={"clouds_file": str(cloud.clouds_file), **LOCAL_CLOUD_OPTIONS,
                         **fields.pop("options", {})},
                **fields)


def sites_yaml(tmp_path: Path, cloud, *entries: dict) -> str:
    sites = [{"provider": "openstack", "credentials": {"cloud": e.pop("project")},
              "options": {"clouds_file": str(cloud.clouds_file), **LOCAL_CLOUD_OPTIONS}, **e}
             for e in entries]
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": sites}))
    return str(path)


def leftovers(admin, deployment: str, server_ids=()) -> dict:
    """Everything of this deployment the cloud still holds, looked up by tag as admin."""
    tag = f"orchestrator-deployment={deployment}"
    volumes = [v for v in admin.block_storage.volumes(details=True, all_projects=True)
               if (v.metadata or {}).get("orchestrator-deployment") == deployment]
    user = harness.find(admin.identity.find_user, harness.USER, domain_id="default")
    keypairs = [k.name for k in admin.compute.keypairs(user_id=user.id) if deployment in k.name]
    return {
        "servers": [s.id for s in admin.compute.servers(all_projects=True,
                                                        tags=deployment_tag(deployment))],
        "volumes": [v.id for v in volumes],
        "networks": [n.id for n in admin.network.networks(tags=tag)],
        "subnets": [s.id for s in admin.network.subnets(tags=tag)],
        "routers": [r.id for r in admin.network.routers(tags=tag)],
        "security_groups": [g.id for g in admin.network.security_groups(tags=tag)],
        "floating_ips": [f.id for f in admin.network.ips(tags=tag)],
        "ports": [p.id for sid in server_ids for p in admin.network.ports(device_id=sid)],
        "keypairs": keypairs,
    }


NOTHING = {k: [] for k in ("servers", "volumes", "networks", "subnets", "routers",
                           "security_groups", "floating_ips", "ports", "keypairs")}


def count_requests(provider):
    """Wrap the SDK session to count HTTP requests (the SDK's, not our code)."""
    session = provider.conn.session
    calls = []
    real = session.request

    def counting(url, method, *args, **kwargs):
        calls.append(f"{method} {url}")
        return real(url, method, *args, **kwargs)

    session.request = counting
    return calls, lambda: setattr(session, "request", real)


# -- what the site offers ---------------------------------------------------------------------
def test_offer_reads_gpus_infiniband_images_and_quotas(cloud):
    from orchestrator.providers.base import Flavor, GpuOffer

    declared = (Flavor("g1.vgpu", 4, 4096, gpus=GpuOffer(1, "NVIDIA", "T4")),)
    provider = OpenStackProvider(site(cloud, "os-offer", "orch-main", flavors=declared))
    offer = provider.offer()
    flavors = {f.name: f for f in offer.flavors}
    assert flavors["g1.a100x2"].gpus == GpuOffer(2, "NVIDIA", "A100")  # resources:PGPU
    assert flavors["g1.v100x1"].gpus == GpuOffer(1, "NVIDIA", "V100")  # pci_passthrough
    assert flavors["g1.vgpu"].gpus == GpuOffer(1, "NVIDIA", "T4")  # VGPU + sites.yaml
    assert flavors["hpc.ib"].infiniband and not flavors["m1.small"].infiniband
    assert flavors["m1.small"].gpus.count == 0 and flavors["m1.small"].cpus == 2
    images = {i.name: i for i in offer.images}
    cuda = images["ubuntu-22.04-cuda"]
    assert (cuda.distribution, cuda.version, cuda.gpu_driver, cuda.cuda_version) == \
        ("ubuntu", "22.04", "535", "12.2")
    assert "rocky-9" not in images  # private to other projects
    assert offer.quotas.instances == 60 and offer.quotas.used["instances"] >= 0
    result = provider.check()
    assert result.reachable and result.credentials_valid, result.message


def test_credentials_application_credential_token_and_oidc(cloud, tmp_path):
    user = cloud.connection("orch-main")
    identity = user.identity
    credential = identity.create_application_credential(
        user=user.current_user_id, name=f"orch-test-{uuid.uuid4().hex[:6]}")
    token = user.auth_token
    common = {"auth_url": harness.AUTH_URL}
    clouds = {"clouds": {
        "appcred": {"auth_type": "v3applicationcredential", "auth": {
            **common, "application_credential_id": credential.id,
            "application_credential_secret": credential.secret}},
        "token": {"auth_type": "v3token", "auth": {
            **common, "token": token, "project_id": user.current_project_id}},
        "oidc": {"auth_type": "v3oidcaccesstoken", "auth": {
            **common, "identity_provider": "egi", "protocol": "openid",
            "access_token": "oidc-access-token-value", "project_id": user.current_project_id}},
        "wrong": {"auth": {**common, "username": harness.USER, "password": "not-the-password",
                           "project_name": "orch-main", "user_domain_name": "Default",
                           "project_domain_name": "Default"}}}}
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    try:
        for name in ("appcred", "token"):
            result = OpenStackProvider(Site(name=name, provider="openstack",
                                            credentials={"cloud": name},
                                            options={"clouds_file": str(path)})).check()
            assert result.reachable and result.credentials_valid, (name, result.message)
            assert any(f.name == "g1.a100x2" for f in result.offer.flavors)
        for name, secret in (("oidc", "oidc-access-token-value"), ("wrong", "not-the-password")):
            result = OpenStackProvider(Site(name=name, provider="openstack",
                                            credentials={"cloud": name},
                                            options={"clouds_file": str(path)})).check()
            assert not result.credentials_valid and result.message, name
            assert secret not in result.message
    finally:
        identity.delete_application_credential(user.current_user_id, credential.id)


# -- a deployment through the engine ----------------------------------------------------------
CLUSTER = """
topology_template:
  inputs:
    workers: {type: integer, default: 1}
    removal: {type: list, entry_schema: {type: string}, default: []}
  node_templates:
    privnet:
      type: orchestrator.nodes.Network
      properties: {ip_version: 4}
    front:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
        os: {properties: {distribution: ubuntu, version: "22.04"}}
        endpoint:
          properties:
            public_ip: true
            ports:
              http: {port: 80}
              admin: {port: 8443, remote_cidr: 10.0.0.0/8}
    front_port:
      type: orchestrator.nodes.Port
      requirements: [{binding: front}, {link: privnet}]
    gpu:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2, gpus: {count: 2, vendor: NVIDIA, model: A100}}}
        os: {properties: {distribution: ubuntu}}
      requirements:
        - local_storage:
            node: data
            relationship:
              type: orchestrator.relationships.AttachesTo
              properties: {location: /data, device: /dev/vdb}
    gpu_port:
      type: orchestrator.nodes.Port
      requirements: [{binding: gpu}, {link: privnet}]
    data:
      type: orchestrator.nodes.BlockStorage
      properties: {size: 1 GiB}
    worker:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
        os: {properties: {distribution: ubuntu}}
        scalable:
          properties: {count: {get_input: workers}, removal_list: {get_input: removal}}
    worker_port:
      type: orchestrator.nodes.Port
      requirements: [{binding: worker}, {link: privnet}]
  outputs:
    front_public: {value: {get_attribute: [front, public_address]}}
"""


def computes(orch, ident) -> dict:
    return {(r.node, r.index): r for r in orch.store.resources(ident) if r.kind == "compute"}


def test_deploy_scale_and_delete_leave_nothing(cloud, admin, tmp_path):
    sites = sites_yaml(tmp_path, cloud, {"name": "os-main", "project": "orch-main"})
    orch = es.orchestrator(tmp_path, sites, poll_interval_s=0.5)
    template = es.write_template(tmp_path, CLUSTER)
    name = f"os-cluster-{uuid.uuid4().hex[:6]}"
    ident, seen = None, set()
    try:
        started = time.monotonic()
        applied = orch.apply(orch.plan(template, name=name).plan)
        ident = applied.deployment.id
        assert applied.run.ok, applied.run.failed
        print(f"3 servers, volume, network, router, floating IP in "
              f"{time.monotonic() - started:.1f} s")
        rows = computes(orch, ident)
        seen |= {r.provider_id for r in rows.values()}
        assert sorted(rows) == [("front", 0), ("gpu", 0), ("worker", 0)]
        assert rows[("gpu", 0)].attributes["flavor"] == "g1.a100x2"  # placement's GPU pick
        assert rows[("front", 0)].attributes["flavor"] == "m1.tiny"
        front = rows[("front", 0)].attributes
        assert front["public_address"].startswith("172.24.4.")
        assert front["ssh_host"] == front["public_address"] and front["ssh_user"] == "root"
        assert orch.outputs(name)["front_public"] == front["public_address"]
        for key in (("gpu", 0), ("worker", 0)):  # private only: Ansible needs a jump host
            attrs = rows[key].attributes
            assert attrs["ssh_host"] is None and attrs["public_address"] is None
            assert attrs["private_address"].split(".")[:3] == \
                front["private_address"].split(".")[:3]  # all on privnet

        # what exists in the cloud, by tag
        found = leftovers(admin, ident)
        assert len(found["servers"]) == 3 and len(found["volumes"]) == 1
        assert len(found["networks"]) == 1 and len(found["routers"]) == 1
        assert len(found["floating_ips"]) == 1 and len(found["keypairs"]) == 1
        router = admin.network.get_router(found["routers"][0])
        assert router.external_gateway_info["network_id"] == \
            harness.find(admin.network.find_network, harness.EXTERNAL_NETWORK).id
        rules = {(r.protocol, r.port_range_min, r.remote_ip_prefix)
                 for g in found["security_groups"]
                 for r in admin.network.security_group_rules(security_group_id=g)
                 if r.direction == "ingress"}
        assert {("tcp", 80, "0.0.0.0/0"), ("tcp", 8443, "10.0.0.0/8"),
                ("tcp", 22, "0.0.0.0/0")} <= rules
        volume = admin.block_storage.get_volume(found["volumes"][0])
        assert volume.status == "in-use"
        assert volume.attachments[0]["server_id"] == rows[("gpu", 0)].provider_id
        server = admin.compute.get_server(rows[("front", 0)].provider_id)
        assert server.key_name == f"orch-{ident}"
        user_data = base64.b64decode(server.user_data).decode()
        assert user_data.startswith("#cloud-config") and "ssh-ed25519" in user_data
        assert server.metadata["orchestrator-node"] == "front"

        # poll of three servers is one API call
        provider = orch.provider("os-main")
        calls, restore = count_requests(provider)
        states = provider.poll([r.provider_id for r in rows.values()])
        restore()
        assert len(calls) == 1 and "/servers/detail" in calls[0], calls
        assert all(s.status == ACTIVE for s in states.values())

        # scale out 3 -> 5 servers, then in with a removal list
        applied = orch.apply(orch.plan(template, name=name, sets=["workers=3"]).plan)
        assert applied.run.ok, applied.run.failed
        rows = computes(orch, ident)
        seen |= {r.provider_id for r in rows.values()}
        assert len(rows) == 5 and len(leftovers(admin, ident)["servers"]) == 5
        keep = rows[("worker", 1)].provider_id
        applied = orch.apply(orch.plan(template, name=name, sets=[
            "workers=1", 'removal=["worker[0]", "worker[2]"]']).plan)
        assert applied.run.ok, applied.run.failed
        rows = computes(orch, ident)
        assert sorted(rows) == [("front", 0), ("gpu", 0), ("worker", 1)]
        assert rows[("worker", 1)].provider_id == keep
        assert len(leftovers(admin, ident)["servers"]) == 3

        assert orch.delete(name).ok
        assert leftovers(admin, ident, seen) == NOTHING
    finally:
        if ident:
            _force_cleanup(cloud, ident)


def _force_cleanup(cloud, ident: str, project: str = "orch-main") -> None:
    """Remove whatever a failed test left of a deployment (only what carries its tags)."""
    provider = OpenStackProvider(site(cloud, "cleanup", project))
    for resource in provider.find(ident):
        if resource.kind == "compute":
            provider.delete(resource.provider_id)
    for resource in provider.find(ident):
        provider.delete(resource.provider_id)
    provider.release(ident)


# -- errors, failover, quotas -----------------------------------------------------------------
ROCKY = """
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1, mem_size: 512 MB}}
        os: {properties: {distribution: rocky}}
"""


def test_error_server_carries_nova_fault(cloud):
    provider = OpenStackProvider(site(cloud, "os-a", "orch-a"))
    ident = f"err{uuid.uuid4().hex[:8]}"
    try:
        server = provider.create(ResourceSpec("compute", ident, "vm", 0, flavor="m1.tiny",
                                              image="rocky-9",
                                              properties={"ssh_public_key": KEY}))
        assert server.status != ACTIVE
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = provider.poll([server.provider_id])[server.provider_id]
            if state.status != "building":
                break
            time.sleep(1)
        assert state.status == ERROR and "No valid host" in state.fault, state
    finally:
        _force_cleanup(cloud, ident, "orch-a")


def test_server_in_error_fails_over_to_the_next_site(cloud, admin, tmp_path):
    sites = sites_yaml(tmp_path, cloud, {"name": "os-a", "project": "orch-a", "priority": 10},
                       {"name": "os-b", "project": "orch-b", "priority": 5})
    events: list = []
    orch = es.orchestrator(tmp_path, sites, events, poll_interval_s=0.5)
    template = es.write_template(tmp_path, ROCKY)
    name = f"os-failover-{uuid.uuid4().hex[:6]}"
    ident = None
    try:
        applied = orch.apply(orch.plan(template, name=name).plan)
        ident = applied.deployment.id
        assert applied.run.ok, applied.run.failed
        row = computes(orch, ident)[("vm", 0)]
        assert row.site == "os-b"
        failover = [e["message"] for e in events if e.get("kind") == "failover"]
        assert failover and "os-a" in failover[0] and "No valid host" in failover[0], events
        servers = leftovers(admin, ident)["servers"]
        assert servers == [row.provider_id]  # the ERROR server on os-a was deleted
        assert orch.delete(name).ok
        assert leftovers(admin, ident) == NOTHING
    finally:
        if ident:
            _force_cleanup(cloud, ident, "orch-a")
            _force_cleanup(cloud, ident, "orch-b")


def test_quota_is_checked_before_creating_and_nova_refusals_name_it(cloud, admin, tmp_path):
    project = harness.find(admin.identity.find_project, "orch-quota", domain_id="default")
    ident = f"quota{uuid.uuid4().hex[:8]}"
    provider = OpenStackProvider(site(cloud, "os-quota", "orch-quota",
                                      options={"quota_refresh_s": 3600}))
    spec = ResourceSpec("compute", ident, "vm", 0, flavor="m1.tiny", image="ubuntu-22.04")
    try:
        admin.compute.update_quota_set(project.id, instances=2)
        provider.create(spec)  # the provider's quota view: 2 instances, none used
        admin.compute.update_quota_set(project.id, instances=1)
        with pytest.raises(QuotaExceededError, match="quota 'instances'") as refused:
            provider.create(ResourceSpec("compute", ident, "vm", 1, flavor="m1.tiny",
                                         image="ubuntu-22.04"))
        assert "Quota exceeded" in str(refused.value)  # Nova's own refusal, translated
        fresh = OpenStackProvider(site(cloud, "os-quota", "orch-quota"))
        with pytest.raises(QuotaExceededError, match=r"quota 'instances' exceeded .*1 of 1"):
            fresh.create(ResourceSpec("compute", ident, "vm", 2, flavor="m1.tiny",
                                      image="ubuntu-22.04"))  # refused before Nova is asked
        # through the engine: placement refuses a deployment the quota cannot hold
        sites = sites_yaml(tmp_path, cloud, {"name": "os-quota", "project": "orch-quota"})
        orch = es.orchestrator(tmp_path, sites)
        template = es.write_template(tmp_path, ROCKY.replace("rocky", "ubuntu") + """
        scalable: {properties: {count: 2}}
""")
        with pytest.raises(OrchestratorError, match="quota instances"):
            orch.plan(template, name=f"os-quota-{uuid.uuid4().hex[:6]}")
    finally:
        _force_cleanup(cloud, ident, "orch-quota")
        admin.compute.update_quota_set(project.id, instances=1)


def test_errors_are_translated_with_the_clouds_message(cloud):
    provider = OpenStackProvider(site(cloud, "os-main", "orch-main"))
    with pytest.raises(ProviderError, match="flavor 'm1.huge' does not exist .*m1.small"):
        provider.create(ResourceSpec("compute", "x", "vm", 0, flavor="m1.huge",
                                     image="ubuntu-22.04"))
    with pytest.raises(ProviderError, match="unknown openstack option 'netwrok'.*network"):
        OpenStackProvider(site(cloud, "bad", "orch-main", options={"netwrok": "x"}))
    missing = OpenStackProvider(site(cloud, "os-missing", "no-such-cloud"))
    result = missing.check()
    assert not result.credentials_valid and "no-such-cloud" in result.message


# -- crashes -------------------------------------------------------------------------------------
def test_release_after_a_crash_between_keypair_and_server(cloud, admin):
    """What create() makes before the server (keypair, security groups, default network
    and router) is removed by release() when the process died before the server."""
    provider = OpenStackProvider(site(cloud, "os-main", "orch-main"))
    ident = f"crash{uuid.uuid4().hex[:8]}"
    provider._ready()
    provider.plumbing.keypair(ident, KEY)
    provider.plumbing.security_groups(ident, "vm", [{"port": 80}])
    provider.plumbing.ensure_network(ident, None, {})
    assert leftovers(admin, ident)["keypairs"] and leftovers(admin, ident)["routers"]
    restarted = OpenStackProvider(site(cloud, "os-main", "orch-main"))
    assert [r for r in restarted.find(ident) if r.kind == "compute"] == []
    restarted.release(ident)
    assert leftovers(admin, ident) == NOTHING


DEPLOY_SCRIPT = """
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from tests import engine_support as es
orch = es.orchestrator(Path(sys.argv[1]), sys.argv[2], poll_interval_s=0.5)
orch.apply(orch.plan(sys.argv[3], name=sys.argv[4]).plan)
"""


def test_kill_9_mid_deploy_then_resume_without_duplicates(cloud, admin, tmp_path):
    sites = sites_yaml(tmp_path, cloud, {"name": "os-main", "project": "orch-main",
                                         "concurrency": 2})
    template = es.write_template(tmp_path, ROCKY.replace("rocky", "ubuntu") + """
        scalable: {properties: {count: 4}}
""")
    name = f"os-kill-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "deploy.py"
    script.write_text(DEPLOY_SCRIPT)
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path), sites, template, name],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    orch = es.orchestrator(tmp_path, sites, poll_interval_s=0.5)
    ident = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            record = orch.store.get_deployment(name, owner=orch.owner)
            if record is not None and leftovers(admin, record.id)["servers"]:
                ident = record.id
                break
            time.sleep(0.2)
        assert ident is not None and child.poll() is None, "the deployment never started"
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        before = len(leftovers(admin, ident)["servers"])
        assert 1 <= before <= 4
        applied = orch.apply(orch.plan(template, name=name).plan)
        assert applied.run.ok, applied.run.failed
        servers = admin.compute.servers(all_projects=True, tags=deployment_tag(ident))
        placed = sorted((s.metadata["orchestrator-node"], s.metadata["orchestrator-index"])
                        for s in servers)
        assert placed == [("vm", "0"), ("vm", "1"), ("vm", "2"), ("vm", "3")]
        print(f"killed with {before} server(s) made; resumed to 4 without duplicates")
        assert orch.delete(name).ok
        assert leftovers(admin, ident) == NOTHING
    finally:
        if child.poll() is None:
            child.kill()
        if ident:
            _force_cleanup(cloud, ident)

"""The opennebula provider against a loopback OpenNebula front end (tests/one_server.py):
a protocol test double speaking OpenNebula's XML-RPC API, since no OpenNebula can run
here. pyone, the provider and the engine are real; the VMs are records that move through
OpenNebula's states over time. Nothing boots behind them, so these tests deploy compute
nodes only: no contextualisation (Ansible) runs on the fake VMs.
"""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    Flavor,
    GpuOffer,
    ProviderError,
    QuotaExceededError,
    ResourceSpec,
)
from orchestrator.providers.opennebula import OpenNebulaProvider, states
from orchestrator.providers.opennebula.vmtemplate import vm_template
from orchestrator.sites import Site
from tests import engine_support as es
from tests.conftest import ROOT
from tests.one_server import parse_template

from tests.integration.conftest import ONE_PASSWORD as PASSWORD  # noqa: E402
GPU_PCI = {"A100": {"vendor": "10de", "device": "20b0", "class": "0302"}}
IB_PCI = {"vendor": "15b3", "device": "101c", "class": "0207"}


def cluster(workers: int, broken: bool = False) -> str:
    name = "broken" if broken else "worker"
    return f"""
topology_template:
  node_templates:
    head:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {{properties: {{num_cpus: 1}}}}
    {name}:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {{properties: {{num_cpus: 2}}}}
        scalable: {{properties: {{count: {workers}}}}}
  outputs:
    head_ip: {{value: {{get_attribute: [head, private_address]}}}}
    worker_ips: {{value: {{get_attribute: [{name}, private_address]}}}}
"""


def one_site(one, auth_file, name="one", **extra) -> dict:
    options = {"network": "private", "public_network": "public", **extra.pop("options", {})}
    return {"name": name, "provider": "opennebula", "priority": extra.pop("priority", 10),
            "credentials": {"endpoint": one.endpoint, "auth_file": str(auth_file)},
            "options": options, **extra}


def site_object(entry: dict) -> Site:
    return Site(name=entry["name"], provider="opennebula", credentials=entry["credentials"],
                options=entry["options"])


def ours(one, deployment: str) -> list[dict]:
    """Our VMs in the fake's pool, once those being terminated (ACTIVE/SHUTDOWN) are DONE:
    OpenNebula takes a moment after terminate-hard, as the real one does."""
    deadline = time.monotonic() + 30
    while True:
        found = [vm for vm in one.live_vms()
                 if vm["user_template"].get("ORCHESTRATOR_DEPLOYMENT") == deployment]
        if all(vm["state"] != (3, states.LCM["SHUTDOWN"]) for vm in found) or \
                time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def cli(tmp_path, sites_file, *args, **kwargs):
    command = [sys.executable, "-m", "orchestrator", "--db", f"sqlite:///{tmp_path / 'state.db'}",
               "--sites", sites_file, *args]
    if kwargs.get("background"):
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT)
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_states_mean_what_opennebula_says():
    assert states.classify(1, states.STATE["PENDING"], 0) == (BUILDING, None)
    assert states.classify(1, 3, states.LCM["PROLOG"])[0] == BUILDING
    assert states.classify(1, 3, states.LCM["BOOT"])[0] == BUILDING
    assert states.classify(1, 3, states.LCM["RUNNING"]) == (ACTIVE, None)
    assert states.classify(1, states.STATE["DONE"], 0) == (DELETED, None)
    status, fault = states.classify(7, 3, states.LCM["BOOT_FAILURE"], "no KVM on host")
    assert status == ERROR and fault == "VM 7 failed (ACTIVE/BOOT_FAILURE): no KVM on host"
    assert "powered off" in states.classify(7, states.STATE["POWEROFF"], 0)[1]
    assert "onevm release 7" in states.classify(7, states.STATE["HOLD"], 0)[1]
    assert "host stopped reporting" in states.classify(7, 3, states.LCM["UNKNOWN"])[1]


def test_vm_template_from_requirements(one, auth_file, tmp_path):
    entry = one_site(one, auth_file, options={"gpu_pci": GPU_PCI, "infiniband": {"pci": IB_PCI},
                                              "ssh_user": "cloudadm"})
    flavor = Flavor("g.a100", 8, 65536, gpus=GpuOffer(2, "NVIDIA", "A100"), infiniband=True)
    site = Site(name="one", provider="opennebula", credentials=entry["credentials"],
                options=entry["options"], flavors=(flavor,))
    provider = OpenNebulaProvider(site)
    spec = ResourceSpec("compute", "dep-tmpl-1", "gpu", 3, flavor="g.a100", image="debian-12",
                        properties={"public_ip": True, "ssh_public_key": 'ssh-ed25519 AAAA "me"',
                                    "requirements": {"disk_gib": 40, "infiniband": True}})
    created = provider.create(spec)
    vm = one.vms[int(created.provider_id)]
    template, user = vm["template"], vm["user_template"]
    assert vm["name"] == "orch-dep-tmpl-gpu-3"
    assert (template["CPU"], template["VCPU"], template["MEMORY"]) == ("8", "8", "65536")
    assert template["DISK"][0]["IMAGE_ID"] == "1" and template["DISK"][0]["SIZE"] == "40960"
    assert [n["NETWORK"] for n in template["NIC"]] == ["private", "public"]
    assert [(p["VENDOR"], p.get("DEVICE")) for p in template["PCI"]] == \
        [("10de", "20b0"), ("10de", "20b0"), ("15b3", "101c")]
    context = template["CONTEXT"][0]
    assert context["SSH_PUBLIC_KEY"] == 'ssh-ed25519 AAAA "me"' and context["NETWORK"] == "YES"
    assert context["USERNAME"] == "cloudadm" and context["START_SCRIPT_BASE64"]
    assert user["ORCHESTRATOR_DEPLOYMENT"] == "dep-tmpl-1" and user["ORCHESTRATOR_INDEX"] == "3"
    assert user["LABELS"] == "orchestrator,orchestrator/dep-tmpl-1"
    # the text round-trips through OpenNebula's template syntax
    text = vm_template(spec, flavor, 1, 40, [0], [], {})
    assert parse_template(text)["CONTEXT"][0]["SSH_PUBLIC_KEY"] == 'ssh-ed25519 AAAA "me"'
    # an unmapped GPU model and a site without InfiniBand are clear errors
    bare = OpenNebulaProvider(Site(name="bare", provider="opennebula",
                                   credentials=entry["credentials"],
                                   options={"network": "private"}))
    with pytest.raises(ProviderError, match="no PCI ids for GPU model V100"):
        bare.create(ResourceSpec("compute", "dep-tmpl-2", "g", 0, image="debian-12",
                                 properties={"requirements": {"gpus": {"count": 1,
                                                                       "model": "V100"}}}))
    with pytest.raises(ProviderError, match="needs InfiniBand but the site declares none"):
        bare.create(ResourceSpec("compute", "dep-tmpl-2", "ib", 0, image="debian-12",
                                 properties={"requirements": {"infiniband": True}}))
    with pytest.raises(ProviderError, match="no image named 'centos-7'"):
        bare.create(ResourceSpec("compute", "dep-tmpl-2", "c", 0, image="centos-7"))
    assert ours(one, "dep-tmpl-2") == []


def test_deploy_scale_and_delete_through_the_engine(one, auth_file, tmp_path):
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = orch.apply(orch.plan(es.write_template(tmp_path, cluster(2)), name="demo").plan)
    assert applied.run.ok, applied.run.failed
    ident = applied.deployment.id
    rows = [r for r in orch.store.resources(ident) if r.kind == "compute"]
    assert len(rows) == 3 and all(r.status == ACTIVE and r.site == "one" for r in rows)
    assert sorted((vm["user_template"]["ORCHESTRATOR_NODE"],
                   vm["user_template"]["ORCHESTRATOR_INDEX"]) for vm in ours(one, ident)) == \
        [("head", "0"), ("worker", "0"), ("worker", "1")]
    head = next(r for r in rows if r.node == "head")
    assert head.attributes["ssh_host"] == head.attributes["private_address"]
    assert head.attributes["ssh_user"] == "root" and head.attributes["ssh_port"] == 22
    outputs = orch.outputs("demo")
    assert outputs["head_ip"].startswith("10.10.0.") and len(outputs["worker_ips"]) == 2
    # status comes from pool listings, never one call per VM
    assert "one.vm.info" not in one.calls and one.calls.count("one.vmpool.info") >= 2

    for count in (4, 2):
        plan = orch.plan(es.write_template(tmp_path, cluster(count)), name="demo").plan
        scaled = orch.apply(plan)
        assert scaled.run.ok, scaled.run.failed
        workers = sorted(vm["user_template"]["ORCHESTRATOR_INDEX"] for vm in ours(one, ident)
                         if vm["user_template"]["ORCHESTRATOR_NODE"] == "worker")
        assert workers == [str(i) for i in range(count)]

    dumped = json.dumps([e for e in events]) + json.dumps(
        [r.attributes for r in orch.store.resources(ident)])
    assert PASSWORD not in dumped
    assert orch.delete("demo").ok
    assert ours(one, ident) == []


def test_kill_and_resume_without_duplicates(one, auth_file, tmp_path):
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    template = es.write_template(tmp_path, cluster(3))
    process = cli(tmp_path, sites, "deploy", template, "--name", "demo", "--yes",
                  background=True)
    # SIGKILL the CLI right after OpenNebula allocated the second VM: the cloud has it,
    # the orchestrator never heard of it
    one.after_call["one.vm.allocate"] = \
        lambda n: os.kill(process.pid, signal.SIGKILL) if n == 2 else None
    try:
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9
    one.after_call.clear()
    resumed = cli(tmp_path, sites, "deploy", "--resume", "demo", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = json.loads(cli(tmp_path, sites, "status", "demo", "--format", "json").stdout)
    ident = status["deployment"]["id"]
    keys = Counter((vm["user_template"]["ORCHESTRATOR_NODE"],
                    vm["user_template"]["ORCHESTRATOR_INDEX"]) for vm in ours(one, ident))
    assert set(keys) == {("head", "0"), ("worker", "0"), ("worker", "1"), ("worker", "2")}
    assert max(keys.values()) == 1, f"duplicates: {keys}"
    assert {r["provider_id"] for r in status["resources"] if r["kind"] == "compute"} == \
        {str(vm["id"]) for vm in ours(one, ident)}
    gone = cli(tmp_path, sites, "delete", "demo", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert ours(one, ident) == []


def test_failed_vm_is_a_clear_error_and_fails_over(one, auth_file, tmp_path):
    one.failing.append({"name": "-broken-", "lcm": "BOOT_FAILURE",
                        "error": "Error deploying virtual machine: could not open /dev/kvm"})
    sites = es.write_sites(tmp_path, one_site(one, auth_file, priority=10),
                           es.site("backup", priority=1))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = orch.apply(orch.plan(es.write_template(tmp_path, cluster(1, broken=True)),
                                   name="demo").plan)
    assert applied.run.ok, applied.run.failed
    rows = {(r.node, r.index): r for r in orch.store.resources(applied.deployment.id)}
    assert rows[("head", 0)].site == "one" and rows[("broken", 0)].site == "backup"
    messages = [e["message"] for e in events if e["kind"] in ("attempt-failed", "failover")]
    assert any("ACTIVE/BOOT_FAILURE" in m and "could not open /dev/kvm" in m for m in messages)
    assert any("failing over from site one to backup" in m for m in messages)
    # the failed VM was terminated; only the head is left on OpenNebula
    assert [vm["user_template"]["ORCHESTRATOR_NODE"]
            for vm in ours(one, applied.deployment.id)] == ["head"]


def test_quota_errors_are_clear(one, auth_file, tmp_path):
    one.quota.update({"VMS": 2, "CPU": 4})
    entry = one_site(one, auth_file)
    provider = OpenNebulaProvider(site_object(entry))
    offer = provider.offer()
    assert offer.quotas.instances == 2 and offer.quotas.cores == 4
    assert max(f.cpus for f in offer.flavors) == 4  # flavors are capped by the quota
    spec = ResourceSpec("compute", "dep-quota", "vm", 0, flavor="one-2c-4g", image="debian-12")
    provider.create(spec)
    with pytest.raises(QuotaExceededError, match=r"quota 'cores' \(OpenNebula VM quota CPU\) "
                                                 r"exceeded for vm\[1\]: 4 requested, 2 of 4"):
        provider.create(ResourceSpec("compute", "dep-quota", "vm", 1, flavor="one-4c-8g",
                                     image="debian-12"))
    # OpenNebula's own refusal (another client took the quota meanwhile) is a quota error too
    with pytest.raises(QuotaExceededError, match="limit of 4 reached for CPU quota"):
        provider.one.call("vm.allocate", 'CPU = "4"\nMEMORY = "512"\n', False)
    assert len(ours(one, "dep-quota")) == 1
    # and placement refuses a deployment the quota cannot hold
    from orchestrator.errors import PlacementError
    orch = es.orchestrator(tmp_path, es.write_sites(tmp_path, entry))
    with pytest.raises(PlacementError, match="quota instances"):
        orch.plan(es.write_template(tmp_path, cluster(3)), name="big")


def test_transient_errors_are_retried(one, auth_file, tmp_path):
    one.call_faults += [{"kind": "http503", "times": 2},
                        {"kind": "internal", "method": "one.vm.allocate", "times": 1}]
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = orch.apply(orch.plan(es.write_template(tmp_path, cluster(1)), name="demo").plan)
    assert applied.run.ok, applied.run.failed
    assert any(e["kind"] == "retry" and "internal error" in e["message"] for e in events)
    assert len(ours(one, applied.deployment.id)) == 2  # no duplicate from the retries


def test_sites_check_reports_credentials(one, auth_file, tmp_path):
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    good = cli(tmp_path, sites, "sites", "check")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok   one: reachable, credentials valid" in good.stdout
    auth_file.write_text("oneadmin:wrong-password\n")
    bad = cli(tmp_path, sites, "sites", "check")
    assert bad.returncode == 1
    assert "FAIL one:" in bad.stdout and "rejected the credentials of user 'oneadmin'" in bad.stdout
    as_json = cli(tmp_path, sites, "sites", "check", "--format", "json")
    result = json.loads(as_json.stdout)[0]
    assert result["reachable"] and not result["credentials_valid"]
    for output in (good, bad, as_json):
        assert PASSWORD not in output.stdout + output.stderr
        assert "wrong-password" not in output.stdout + output.stderr
    one.stop()
    down = cli(tmp_path, sites, "sites", "check")
    assert down.returncode == 1 and "cannot reach" in down.stdout


def test_resize_powers_off_resizes_and_resumes(one, auth_file):
    provider = OpenNebulaProvider(site_object(one_site(one, auth_file)))
    spec = ResourceSpec("compute", "dep-resize", "vm", 0, flavor="one-1c-2g", image="debian-12")
    vm_id = provider.create(spec).provider_id
    deadline = time.monotonic() + 30
    while provider.poll([vm_id])[vm_id].status != ACTIVE and time.monotonic() < deadline:
        time.sleep(0.05)
    bigger = ResourceSpec("compute", "dep-resize", "vm", 0, flavor="one-2c-8g",
                          image="debian-12")
    provider.update(vm_id, bigger)
    vm = one.vms[int(vm_id)]
    assert (vm["template"]["CPU"], vm["template"]["VCPU"], vm["template"]["MEMORY"]) == \
        ("2", "2", "8192")
    while provider.poll([vm_id])[vm_id].status != ACTIVE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert provider.poll([vm_id])[vm_id].attributes["state"] == "ACTIVE/RUNNING"
    assert provider.update(vm_id, bigger).status == ACTIVE  # nothing to change: no power-off
    assert one.calls.count("one.vm.resize") == 1
    provider.delete(vm_id)
    assert ours(one, "dep-resize") == []

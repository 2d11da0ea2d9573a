"""Volumes (BlockStorage) of the opennebula provider: persistent DATABLOCK images, against
the loopback OpenNebula front end (tests/one_server.py, tests/one_images.py), a protocol test
double speaking OpenNebula's XML-RPC API, since no OpenNebula can run here. pyone, the
provider and the engine are real; images and VMs are records that move through
OpenNebula's states over time.
"""
import os
import re
import signal
import time
from types import SimpleNamespace

import pytest

from orchestrator.providers.base import (
    ACTIVE,
    BUILDING,
    DELETED,
    ERROR,
    ProviderError,
    QuotaExceededError,
    ResourceSpec,
)
from orchestrator.providers.opennebula import OpenNebulaProvider
from orchestrator.providers.opennebula import volumes as one_volumes
from tests import engine_support as es
from tests.integration.test_opennebula_provider import cli, one_site, ours, site_object


def attached(disk: str = "data", count: int = 1) -> str:
    return f"""
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {{properties: {{num_cpus: 1}}}}
        scalable: {{properties: {{count: {count}}}}}
      requirements:
        - local_storage:
            node: {disk}
            relationship: {{type: tosca.relationships.AttachesTo,
                           properties: {{location: /data, device: /dev/vdc}}}}
    {disk}:
      type: orchestrator.nodes.BlockStorage
      properties: {{size: 10 GiB}}
"""


def our_images(one, deployment: str) -> list[dict]:
    return [i for i in one.live_images()
            if i["template"].get("ORCHESTRATOR_DEPLOYMENT") == deployment]


def test_image_states_mean_what_opennebula_says():
    def image(state, error=None):
        return SimpleNamespace(ID=7, NAME="orch-x-data-0", STATE=state,
                               TEMPLATE={"ERROR": error} if error else {})
    states_by_name = {name: number for number, name in enumerate(one_volumes.IMAGE_STATES)}
    for name in ("INIT", "LOCKED", "CLONE"):
        assert one_volumes.classify(image(states_by_name[name]))[0] == BUILDING
    for name in ("READY", "USED", "USED_PERS", "LOCKED_USED_PERS"):
        assert one_volumes.classify(image(states_by_name[name])) == (ACTIVE, None)
    assert one_volumes.classify(image(states_by_name["DELETE"]))[0] == DELETED
    assert one_volumes.classify(image(5, "mkfs failed")) == \
        (ERROR, "image 7 (orch-x-data-0) is in ERROR: mkfs failed")
    assert "oneimage enable 7" in one_volumes.classify(image(states_by_name["DISABLED"]))[1]
    assert one_volumes.target_of("/dev/vdc") == "vdc" and one_volumes.target_of(None) is None


def test_volume_is_a_persistent_image_attached_to_the_vm(one, auth_file, tmp_path):
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, attached(count=2))
    applied = orch.apply(orch.plan(template, name="vol").plan)
    assert applied.run.ok, applied.run.failed
    ident = applied.deployment.id
    rows = {(r.node, r.index, r.kind): r for r in orch.store.resources(ident)}
    images = {int(i["template"]["ORCHESTRATOR_INDEX"]): i for i in our_images(one, ident)}
    vms = {int(vm["user_template"]["ORCHESTRATOR_INDEX"]): vm for vm in ours(one, ident)}
    assert sorted(images) == sorted(vms) == [0, 1]
    for index, image in images.items():
        assert (image["type"], image["persistent"], image["size"]) == ("DATABLOCK", True, 10240)
        assert image["template"]["ORCHESTRATOR_NODE"] == "data" and image["datastore"] == 1
        assert image["template"]["LABELS"] == f"orchestrator,orchestrator/{ident}"
        volume = rows[("data", index, "volume")]
        assert volume.status == ACTIVE and volume.provider_id == f"image:{image['id']}"
        # the VM body lists the disk at the requested device; the image is in use by it
        vm = vms[index]
        disk = next(d for d in vm["template"]["DISK"] if d["TARGET"] == "vdc")
        assert disk["IMAGE_ID"] == str(image["id"]) and disk["PERSISTENT"] == "YES"
        assert image["state"] == "USED_PERS" and image["vms"] == [vm["id"]]
        attachment = rows[("data", index, "attachment")]
        assert attachment.provider_id == f"{vm['id']}/image:{image['id']}"
        assert attachment.attributes["device"] == "/dev/vdc"
    # image states come from one imagepool listing per poll, never one call per image
    assert "one.image.info" not in one.calls and one.calls.count("one.imagepool.info") >= 2
    # find() sees volumes and attachments: planning again finds no drift, changes nothing
    again = orch.plan(template, name="vol").plan
    assert {s.action for s in again.steps if s.kind != "outputs"} == {"noop"}
    # scale in: the attachment goes first, then the VM and its image
    assert orch.apply(orch.plan(es.write_template(tmp_path, attached(count=1)),
                                name="vol").plan).run.ok
    assert [i["template"]["ORCHESTRATOR_INDEX"] for i in our_images(one, ident)] == ["0"]
    assert orch.delete("vol").ok
    assert ours(one, ident) == [] and our_images(one, ident) == []


def test_volume_attach_detach_and_delete_rules(one, auth_file):
    one.datastores[100] = {"NAME": "ssd", "TYPE": 0, "TOTAL_MB": 100_000}
    provider = OpenNebulaProvider(site_object(one_site(
        one, auth_file, options={"volume_types": {"fast": "ssd"}})))
    vm_id = provider.create(ResourceSpec("compute", "dep-att", "vm", 0, flavor="one-1c-2g",
                                         image="debian-12")).provider_id
    volume = provider.create(ResourceSpec("volume", "dep-att", "d", 0,
                                          properties={"size_gib": 2, "volume_type": "fast"}))
    assert volume.status == BUILDING and volume.attributes["datastore_id"] == 100
    # a retried create finds the image by its labels
    again = provider.create(ResourceSpec("volume", "dep-att", "d", 0,
                                         properties={"size_gib": 2, "volume_type": "fast"}))
    assert again.provider_id == volume.provider_id
    deadline = time.monotonic() + 30
    while {r.status for r in provider.poll([vm_id, volume.provider_id]).values()} != {ACTIVE}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    attachment = provider.attach(vm_id, volume.provider_id, "/dev/vdd")
    assert attachment.attributes["target"] == "vdd"
    assert provider.attach(vm_id, volume.provider_id, "/dev/vdd") == attachment  # no second
    assert one.calls.count("one.vm.attach") == 1
    with pytest.raises(ProviderError, match=r"still attached to VM \d+ \(ACTIVE/RUNNING\); "
                                            "detach it first"):
        provider.delete(volume.provider_id)
    found = {r.kind: r for r in provider.find("dep-att")}
    assert found["attachment"].provider_id == attachment.provider_id
    assert found["attachment"].tags["orchestrator-node"] == "d"
    provider.detach(attachment.provider_id)
    assert [d["TARGET"] for d in one.vms[int(vm_id)]["template"]["DISK"]] == ["vda"]
    provider.detach(attachment.provider_id)  # detaching what is not attached is fine
    assert one.calls.count("one.vm.detach") == 1
    with pytest.raises(ProviderError, match="no datastore for volume_type 'slow'"):
        provider.create(ResourceSpec("volume", "dep-att", "e", 0,
                                     properties={"size_gib": 1, "volume_type": "slow"}))
    with pytest.raises(ProviderError, match="cannot be an OpenNebula disk TARGET"):
        provider.attach(vm_id, volume.provider_id, "../vdb")
    # as a rollback does: the VM is terminated with the disk still attached; deleting the
    # image waits until OpenNebula released it (VM DONE)
    provider.attach(vm_id, volume.provider_id, None)
    provider.delete(vm_id)
    provider.delete(volume.provider_id)
    provider.delete(volume.provider_id)  # already gone is fine
    assert provider.poll([volume.provider_id])[volume.provider_id].status == DELETED
    assert our_images(one, "dep-att") == [] and ours(one, "dep-att") == []


def test_volume_quota_is_checked(one, auth_file):
    one.datastore_quota[1] = {"SIZE": 15360, "IMAGES": -2}
    provider = OpenNebulaProvider(site_object(one_site(one, auth_file)))
    assert provider.offer().quotas.volume_gib == 15
    provider.create(ResourceSpec("volume", "dep-q", "d", 0, properties={"size_gib": 10}))
    with pytest.raises(QuotaExceededError, match=r"datastore 1 quota SIZE exceeded for volume "
                                                 r"d\[1\]: 10240 MiB requested, 10240 of "
                                                 r"15360 MiB in use"):
        provider.create(ResourceSpec("volume", "dep-q", "d", 1, properties={"size_gib": 10}))
    # OpenNebula's own refusal is a quota error too
    with pytest.raises(QuotaExceededError, match="limit of 15360 reached for SIZE quota"):
        provider.one.call("image.allocate", 'NAME = "x"\nTYPE = "DATABLOCK"\nSIZE = "8192"\n', 1)
    assert len(our_images(one, "dep-q")) == 1


def test_image_in_error_is_a_clear_error(one, auth_file, tmp_path):
    one.failing_images.append({"name": "-broken-", "error": "mkfs.ext4: No space left"})
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = orch.apply(orch.plan(es.write_template(tmp_path, attached("broken")),
                                   name="err").plan)
    assert not applied.run.ok
    failure = applied.run.failed["apply volume broken[0]"]
    assert re.search(r"broken\[0\] went to ERROR: image \d+ \(orch-.*-broken-0\) is in ERROR: "
                     r".*Error creating datablock: mkfs.ext4: No space left", failure), failure
    # rolled back: neither the VM nor the failed image is left
    assert ours(one, applied.deployment.id) == []
    assert our_images(one, applied.deployment.id) == []


def test_kill_and_resume_does_not_duplicate_the_image(one, auth_file, tmp_path):
    sites = es.write_sites(tmp_path, one_site(one, auth_file))
    process = cli(tmp_path, sites, "deploy", es.write_template(tmp_path, attached()),
                  "--name", "vol", "--yes", background=True)
    # SIGKILL the CLI right after OpenNebula allocated the image: the orchestrator never
    # heard its id
    one.after_call["one.image.allocate"] = lambda n: os.kill(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9
    one.after_call.clear()
    resumed = cli(tmp_path, sites, "deploy", "--resume", "vol", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert one.calls.count("one.image.allocate") == 1
    deployment = [i["template"]["ORCHESTRATOR_DEPLOYMENT"] for i in one.live_images()
                  if i["type"] == "DATABLOCK"]
    assert len(deployment) == 1
    vm, = ours(one, deployment[0])
    assert [d["TARGET"] for d in vm["template"]["DISK"]] == ["vda", "vdc"]
    assert es.orchestrator(tmp_path, sites).delete("vol").ok
    assert ours(one, deployment[0]) == [] and our_images(one, deployment[0]) == []

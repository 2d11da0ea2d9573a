"""The INFN-Cloud single VM template (the corpus's single-vm/single_vm.yaml), unchanged,
deployed for real on the built-in local site with the native implementation of its
server type (playbooks/native.yaml: the users of os_users with their SSH keys and sudo):
the user given as an input logs in with their own key and has sudo; with the template's
default inputs (no users) it deploys too, its os_users output being null; a delete leaves
nothing behind."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import CORPUS, require_corpus
from tests.fixtures.roles.deployed import (Deployed, foreign_os_site,
                                           require_podman_and_ansible)

require_podman_and_ansible()
pytestmark = pytest.mark.slow

TEMPLATE = CORPUS / "infn-tosca-templates" / "single-vm" / "single_vm.yaml"


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alice")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True)
    return key


@pytest.fixture(scope="module")
def vm(tmp_path_factory, alice):
    require_corpus()
    users = [{"os_user_name": "alice", "os_user_add_to_sudoers": True,
              "os_user_ssh_public_key": alice.with_suffix(".pub").read_text().strip()}]
    deployed = Deployed(tmp_path_factory.mktemp("infn-vm"), str(TEMPLATE), "vm",
                        [f"users={yaml.safe_dump(users, default_flow_style=True).strip()}",
                         "hostname=alicevm"], site=foreign_os_site())
    try:
        assert deployed.applied.run.ok, deployed.failure()
        yield deployed
    finally:
        deployed.close()


def test_the_plan_configures_the_server_natively_on_the_declared_image(vm):
    steps = {s.id: s for s in vm.plan.steps}
    assert steps["apply compute simple_node[0]"].details["image"] == \
        "debian-12-as-ubuntu-20.04"
    configure = steps["configure software simple_node[0]"]
    assert configure.details["implementation"] == "native: tosca.nodes.indigo.Compute"
    assert "apply compute simple_node[0]" in configure.depends_on


def test_the_user_logs_in_with_their_key_and_has_sudo(vm, alice):
    done = vm.ssh("simple_node", 0, "id -un && sudo -n true && echo sudo-ok", user="alice",
                  key=str(alice))
    assert done.stdout.split() == ["alice", "sudo-ok"]
    # a key that is not alice's is refused
    refused = vm.ssh("simple_node", 0, "true", user="alice", check=False)
    assert refused.returncode != 0


def test_outputs_give_the_address_and_the_user(vm):
    outputs = vm.orch.outputs("vm")
    assert outputs["node_ip"] == "127.0.0.1"
    assert outputs["os_users"]["os_user_name"] == "alice"


def test_delete_leaves_nothing(vm):
    assert vm.delete()
    assert vm.containers() == {"ps": [], "network": [], "volume": []}


def test_the_default_inputs_deploy_too(tmp_path):
    require_corpus()
    deployed = Deployed(tmp_path, str(TEMPLATE), "plain", [], site=foreign_os_site())
    try:
        assert deployed.applied.run.ok, deployed.failure()
        assert deployed.orch.outputs("plain")["os_users"] is None
        assert deployed.ssh("simple_node", 0, "true").returncode == 0
        assert deployed.delete()
    finally:
        deployed.close()

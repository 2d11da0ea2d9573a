"""The steps of role base's one-task action (playbooks/roles/base/action_plugins/base_node.py):
what it asks of the builtin modules for given users, hostname and hosts block. The role's
effect on real nodes (accounts, key login, sudo, idempotence) is tested in
tests/integration/test_contextualize.py."""
from __future__ import annotations

import importlib.util
import subprocess

from tests.conftest import ROOT

PATH = ROOT / "playbooks" / "roles" / "base" / "action_plugins" / "base_node.py"
spec = importlib.util.spec_from_file_location("base_node", PATH)
base_node = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base_node)


def steps_by_label(steps):
    return {label: (module, args) for label, module, args in steps}


def test_a_user_with_keys_and_sudo_gets_account_directory_keys_and_rule():
    steps = base_node.user_steps([{"name": "alice", "ssh_key": ["k1", "", "k2"],
                                   "sudo": "yes", "shell": "/bin/sh"}])
    assert [label for label, _, _ in steps] == [
        "user alice", "/home/alice/.ssh", "/home/alice/.ssh/authorized_keys",
        "/etc/sudoers.d/90-alice"]
    found = steps_by_label(steps)
    assert found["user alice"] == ("user", {"name": "alice", "shell": "/bin/sh",
                                            "home": "/home/alice", "create_home": True})
    module, keys = found["/home/alice/.ssh/authorized_keys"]
    assert module == "copy" and keys["content"].endswith("\nk1\nk2\n")
    assert (keys["owner"], keys["mode"]) == ("alice", "0600")
    assert found["/home/alice/.ssh"][1]["mode"] == "0700"
    sudo = found["/etc/sudoers.d/90-alice"][1]
    assert sudo["content"] == "alice ALL=(ALL) NOPASSWD:ALL\n"
    assert sudo["validate"] == "visudo -cf %s" and sudo["mode"] == "0440"


def test_a_user_without_keys_or_sudo_gets_no_key_file_and_a_withholding_rule():
    steps = steps_by_label(base_node.user_steps([{"name": "bob", "sudo": "false",
                                                   "home": "/srv/bob"}]))
    assert set(steps) == {"user bob", "/etc/sudoers.d/90-bob"}
    assert steps["user bob"][1]["home"] == "/srv/bob"
    assert steps["/etc/sudoers.d/90-bob"][1]["content"] == \
        "# bob: no sudo granted by the orchestrator\n"


def test_hostname_and_hosts_block_are_written_in_place_and_only_when_given():
    assert base_node.node_steps("", "") == []
    found = steps_by_label(base_node.node_steps("vm-0", "10.0.0.2 vm-0\n10.0.0.3 vm-1\n"))
    assert found["/etc/hostname"][1]["content"] == "vm-0\n"
    hosts = found["/etc/hosts"][1]
    assert hosts["block"] == "10.0.0.2 vm-0\n10.0.0.3 vm-1" and hosts["unsafe_writes"]
    assert "TOSCA ORCHESTRATOR CLUSTER HOSTS" in hosts["marker"]


def test_hostname_command_reports_unchanged_or_refused_and_quotes_the_name():
    command = base_node.apply_hostname_command("$(touch /tmp/x)")
    assert "'$(touch /tmp/x)'" in command
    current = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    same = subprocess.run(["sh", "-c", base_node.apply_hostname_command(current)],
                          capture_output=True, text=True)
    assert same.stdout.strip() == "unchanged"

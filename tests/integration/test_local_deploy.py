"""The whole chain on real containers: plan, local provider, Ansible contextualisation
(base role, a relationship operation, an operation output), outputs, scale, delete."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import engine_support as es
from tests.conftest import FIXTURES

PODMAN = shutil.which("podman")
if not PODMAN and not os.environ.get("CI"):
    pytest.skip("podman is not installed (run .ci/containers.sh); in CI these tests run",
                allow_module_level=True)
pytest.importorskip("ansible_runner", reason="the ansible extra is not installed")


def _ours(deployment_id: str) -> dict:
    label = f"label=orchestrator-deployment={deployment_id}"
    return {what: subprocess.run(["podman", what, "ls" if what != "ps" else "-a", "--filter",
                                  label, "--format", "json"], capture_output=True, text=True,
                                 check=True).stdout
            for what in ("ps", "network", "volume")}


def _ssh(host: dict, key: str, command: str) -> str:
    return subprocess.run(
        ["ssh", "-i", key, "-p", str(host["ssh_port"]), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         f"root@{host['ssh_host']}", command], capture_output=True, text=True, timeout=60,
        check=True).stdout


@pytest.fixture
def orch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    sites = es.write_sites(tmp_path, {"name": "local", "provider": "local"})
    orchestrator = es.orchestrator(tmp_path, sites, poll_interval_s=0.2)
    yield orchestrator
    for record in orchestrator.list():  # never leave a container behind
        orchestrator.delete(record.name, force=True)


def test_three_nodes_contextualised_scaled_and_deleted(orch):
    template = str(FIXTURES / "local" / "cluster.yaml")
    applied = orch.apply(orch.plan(template, name="trio").plan)
    assert applied.run.ok, applied.run.failed
    record = applied.deployment
    rows = {(r.node, r.index, r.kind): r for r in orch.store.resources(record.id)}
    key = os.path.join(os.environ["XDG_DATA_HOME"], "orchestrator", "deployments", record.id,
                       "ssh", "id_ed25519")
    front = rows[("front", 0, "compute")].attributes
    for index in (0, 1):
        worker = rows[("worker", index, "compute")].attributes
        assert "alice" in _ssh(worker, key, "getent passwd alice")
        hosts = _ssh(worker, key, "cat /etc/hosts")
        assert "front-0" in hosts and f"worker-{index}" in hosts
        marker = _ssh(worker, key, "cat /var/lib/tosca-orchestrator/markers/"
                                   "add_target-worker_base-front_base")
        assert "source=worker_base" in marker and "target=front_base" in marker
    assert _ssh(front, key, "cat /tmp/greeting").strip() == "hello from the front end"
    outputs = orch.outputs("trio")
    assert outputs["greeting"] == "hello from the front end"
    assert outputs["start_output"] == "hello from the front end"
    assert len(outputs["worker_addresses"]) == 2
    log = orch.node_logs("trio", "worker_base[1]")
    assert log and "PLAY RECAP" in Path(log[0]).read_text()

    bigger = orch.apply(orch.plan(template, sets=["workers=4"], name="trio").plan,
                        sets=["workers=4"])  # 3 -> 5 nodes
    assert bigger.run.ok, bigger.run.failed
    assert len(json.loads(_ours(record.id)["ps"])) == 5
    smaller = orch.apply(orch.plan(template, name="trio").plan)
    assert smaller.run.ok, smaller.run.failed
    assert len(json.loads(_ours(record.id)["ps"])) == 3

    assert orch.delete("trio").ok
    assert {k: json.loads(v) for k, v in _ours(record.id).items()} == \
        {"ps": [], "network": [], "volume": []}


def test_failing_playbook_names_node_operation_task_and_cleans_up(orch, tmp_path):
    playbook = tmp_path / "broken.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                        "    - name: Break the deployment\n"
                        "      ansible.builtin.fail: {msg: disk on fire}\n")
    template = es.write_template(tmp_path, f"""
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{{host: vm}}]
      interfaces:
        Standard:
          configure: {playbook.name}
""")
    applied = orch.apply(orch.plan(template, name="broken").plan)
    assert not applied.run.ok
    (message,) = applied.run.failed.values()
    assert "app[0]" in message and "Standard.configure" in message
    assert "Break the deployment" in message and "disk on fire" in message
    assert json.loads(_ours(applied.deployment.id)["ps"]) == []  # rolled back
    assert orch.delete("broken").ok


def test_kill_mid_deploy_and_resume_finds_exactly_three_nodes(tmp_path):
    import signal
    import sys
    import time

    from tests.conftest import ROOT

    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"))
    sites = es.write_sites(tmp_path, {"name": "local", "provider": "local"})
    base = [sys.executable, "-m", "orchestrator", "--db", f"sqlite:///{tmp_path / 's.db'}",
            "--sites", sites]
    template = str(FIXTURES / "local" / "cluster.yaml")
    deploying = subprocess.Popen(base + ["deploy", template, "--name", "trio", "--yes"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.time() + 120
        while "configuring" not in seen and time.time() < deadline:
            seen += deploying.stderr.readline()  # progress events, one per line
        assert "configuring" in seen, seen
        deploying.send_signal(signal.SIGKILL)  # servers made, contextualisation under way
        deploying.wait()
    finally:
        deploying.stderr.close()
    resumed = subprocess.run(base + ["deploy", "--resume", "trio", "--yes"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=600)
    try:
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        status = json.loads(subprocess.run(base + ["status", "trio", "--format", "json"],
                                           cwd=ROOT, env=env, capture_output=True, text=True,
                                           check=True).stdout)
        deployment_id = status["deployment"]["id"]
        containers = json.loads(_ours(deployment_id)["ps"])
        assert len(containers) == 3, [c.get("Names") for c in containers]
        assert status["deployment"]["status"] == "deployed"
    finally:
        gone = subprocess.run(base + ["delete", "trio", "--yes", "--force"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert gone.returncode == 0, gone.stderr[-2000:]


def test_a_private_only_node_is_reached_through_a_jump_host(orch):
    """Ansible reaches a server that has only a private address through another server
    of the deployment (the Infrastructure Manager's users ask for exactly this)."""
    from orchestrator.contextualize.runner import run_operation
    from orchestrator.resources import playbooks_dir

    template = str(FIXTURES / "local" / "cluster.yaml")
    applied = orch.apply(orch.plan(template, sets=["workers=1"], name="jump").plan,
                         sets=["workers=1"])
    assert applied.run.ok, applied.run.failed
    rows = {(r.node, r.kind): r for r in orch.store.resources(applied.deployment.id)}
    front = rows[("front", "compute")].attributes
    worker = rows[("worker", "compute")].attributes
    folder = Path(os.environ["XDG_DATA_HOME"]) / "orchestrator" / "deployments" / \
        applied.deployment.id
    key = str(folder / "ssh" / "id_ed25519")
    private_only = {"node": "worker", "index": 0, "ansible_host": None,
                    "private_address": worker["private_address"],
                    "ansible_ssh_private_key_file": key,
                    "jump_host": {"host": front["ssh_host"], "port": front["ssh_port"],
                                  "user": "root"}}
    result = run_operation(playbooks_dir() / "marker.yml", [private_only],
                           data_dir=folder, operation="Configure.add_target",
                           extravars={"source": "jumped", "target": "front",
                                      "tosca_operation": "jump"}, node="worker[0]")
    assert result.outputs["marker"].endswith("jump-jumped-front")
    assert "source=jumped" in _ssh(worker, key, "cat " + result.outputs["marker"])


def test_galaxy_role_artifacts_used_when_available_locally(orch, tmp_path):
    role = tmp_path / "roles" / "acme.greeter" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("- name: Greet\n  ansible.builtin.copy:\n"
                                   "    dest: /tmp/greeted\n    content: \"by acme\\n\"\n")
    (tmp_path / "greet.yml").write_text("- hosts: all\n  gather_facts: false\n"
                                        "  roles: [acme.greeter]\n")
    body = """
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
      artifacts:
        greeter: {file: ROLE, type: tosca.artifacts.AnsibleGalaxy.role}
      interfaces:
        Standard:
          configure: greet.yml
"""
    header = ("tosca_definitions_version: tosca_simple_yaml_1_3\n"
              "imports: [orchestrator/all.yaml, indigo/custom_types.yaml]\n")
    template = tmp_path / "t.yaml"
    template.write_text(header + body.replace("ROLE", "acme.greeter"))
    template = str(template)
    applied = orch.apply(orch.plan(template, name="galaxy").plan)
    assert applied.run.ok, applied.run.failed
    vm = next(r for r in orch.store.resources(applied.deployment.id) if r.kind == "compute")
    key = str(Path(os.environ["XDG_DATA_HOME"]) / "orchestrator" / "deployments" /
              applied.deployment.id / "ssh" / "id_ed25519")
    assert _ssh(vm.attributes, key, "cat /tmp/greeted").strip() == "by acme"
    missing = tmp_path / "m.yaml"
    missing.write_text(header + body.replace("ROLE", "acme.absent"))
    missing = str(missing)
    failed = orch.apply(orch.plan(missing, name="absent").plan)
    (message,) = failed.run.failed.values()
    assert "role 'acme.absent'" in message and "ansible-galaxy role install" in message


def test_removed_software_is_stopped_and_deleted_on_its_host(orch, tmp_path):
    """Removing a software node while its server stays runs the node's Standard.stop and
    Standard.delete there, with the inputs evaluated when it was configured."""
    playbook = tmp_path / "note.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                        "    - name: Note the operation\n"
                        "      ansible.builtin.shell: echo {{ tosca_operation }} {{ word }}"
                        " >> /tmp/operations\n      changed_when: true\n")
    node = f"""
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{{host: vm}}]
      interfaces:
        Standard:
          configure: {{implementation: {playbook.name}, inputs: {{word: {{get_input: word}}}}}}
          stop: {{implementation: {playbook.name}, inputs: {{word: {{get_input: word}}}}}}
          delete: {{implementation: {playbook.name}, inputs: {{word: bye}}}}
"""
    base = """
topology_template:
  inputs:
    word: {type: string, default: hello}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
"""
    applied = orch.apply(orch.plan(es.write_template(tmp_path, base + node), name="undo").plan)
    assert applied.run.ok, applied.run.failed
    record = applied.deployment
    key = os.path.join(os.environ["XDG_DATA_HOME"], "orchestrator", "deployments", record.id,
                       "ssh", "id_ed25519")
    vm = {(r.node, r.kind): r for r in orch.store.resources(record.id)}[("vm", "compute")]
    assert _ssh(vm.attributes, key, "cat /tmp/operations").split("\n")[:1] == ["configure hello"]

    plan = orch.plan(es.write_template(tmp_path, base, "without-app.yaml"), name="undo").plan
    assert [(s.action, s.node) for s in plan.steps if s.kind == "software"] == \
        [("delete", "app")]
    assert orch.apply(plan).run.ok
    assert _ssh(vm.attributes, key, "cat /tmp/operations").split() == \
        ["configure", "hello", "stop", "hello", "delete", "bye"]
    assert orch.delete("undo").ok

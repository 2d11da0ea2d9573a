"""Real Ansible against real containers: the Ansible contextualisation back end.

Targets are Debian 12 podman containers running sshd, published on 127.0.0.1, reached
as root with a key generated for the test. The image is the local provider's
(``localhost/orchestrator-node:bookworm``, built by ``orchestrator.providers.local.image``)
when that module exists, else one built here once with debootstrap
(``localhost/orchestrator-ctx-test:bookworm``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ansible_runner", reason="needs the `ansible` extra (ansible-runner)")

from orchestrator.contextualize import AnsibleConfigurator, run_operation
from orchestrator.contextualize.inventory import build_inventory, cluster_hosts
from orchestrator.errors import ContextualizationError
from orchestrator.plan.model import Step
from orchestrator.resources import playbooks_dir
from orchestrator.topology.model import Node, Operation, Relationship, Topology
from orchestrator.tosca.functions import Deferred

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "contextualize"
PROVIDER_IMAGE = "localhost/orchestrator-node:bookworm"
TEST_IMAGE = "localhost/orchestrator-ctx-test:bookworm"
PATH_ENV = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=10000:10000",
             "--ulimit", "nproc=10000:10000"]

if shutil.which("podman") is None:
    if os.environ.get("CI"):
        raise RuntimeError("podman is required in CI (apt-get install -y podman runc "
                           "debootstrap openssh-client)")
    pytest.skip("podman is not installed (apt-get install -y podman runc debootstrap)",
                allow_module_level=True)

pytestmark = pytest.mark.slow


def _podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True,
                          **kwargs)


def _image_exists(name: str) -> bool:
    return _podman("image", "exists", name, check=False).returncode == 0


def _build_image() -> str:
    if _image_exists(PROVIDER_IMAGE):
        return PROVIDER_IMAGE
    if importlib.util.find_spec("orchestrator.providers.local.image") is not None:
        subprocess.run(["python", "-m", "orchestrator.providers.local"], check=True)
        if _image_exists(PROVIDER_IMAGE):
            return PROVIDER_IMAGE
    if _image_exists(TEST_IMAGE):
        return TEST_IMAGE
    if shutil.which("debootstrap") is None:
        pytest.fail("no node image and no debootstrap to build one")
    root = tempfile.mkdtemp(prefix="ctx-image-")
    try:
        subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=openssh-server,python3,sudo", "bookworm", root],
                       check=True, capture_output=True)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "--change", PATH_ENV, "-", TEST_IMAGE],
                       stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return TEST_IMAGE


class Nodes:
    """Containers started for one test module; every one removed in the finalizer."""

    def __init__(self, image: str, key: Path):
        self.image, self.key, self.names = image, key, []

    def start(self, node: str, count: int = 1, ports: tuple[int, ...] = (),
              ca_bundle: bool = False) -> list[dict]:
        pub = self.key.with_suffix(".pub").read_text().strip()
        started = []
        for index in range(count):
            name = f"ctx-{uuid.uuid4().hex[:8]}-{node}-{index}"
            extra = []
            for port in ports:
                extra += ["-p", f"127.0.0.1::{port}"]
            if ca_bundle and os.path.exists(HOST_CA):
                extra += ["-v", f"{HOST_CA}:/etc/ssl/certs/host-ca.crt:ro"]
            script = ('mkdir -p /root/.ssh && printf "%s\\n" "$KEY" > /root/.ssh/authorized_keys'
                      ' && chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys'
                      ' && ssh-keygen -A >/dev/null && mkdir -p /run/sshd'
                      ' && exec /usr/sbin/sshd -D -e')
            _podman("run", "-d", "--name", name, *RUN_FLAGS, "-p", "127.0.0.1::22", *extra,
                    "-e", f"KEY={pub}", self.image, "sh", "-c", script)
            self.names.append(name)
            started.append((name, index))
        hosts = []
        for name, index in started:
            host = {"node": node, "index": index, "container": name,
                    "ansible_host": "127.0.0.1", "ansible_port": self.port(name, 22),
                    "ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
                    "private_address": _podman("inspect", "-f",
                                               "{{.NetworkSettings.IPAddress}}",
                                               name).stdout.strip() or None}
            host["published"] = {p: self.port(name, p) for p in ports}
            self.wait_ssh(host)
            hosts.append(host)
        return hosts

    def port(self, name: str, port: int) -> int:
        out = _podman("port", name, str(port)).stdout.strip().splitlines()[0]
        return int(out.rsplit(":", 1)[1])

    def wait_ssh(self, host: dict, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                ["ssh", "-i", str(self.key), "-p", str(host["ansible_port"]),
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
                 "root@127.0.0.1", "true"], check=False, capture_output=True, text=True)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd in {host['container']} not reachable: "
                                   f"{done.stderr.strip()}")
            time.sleep(0.5)

    def exec(self, host: dict, *command: str) -> str:
        return _podman("exec", host["container"], *command).stdout

    def remove_all(self) -> None:
        for name in self.names:
            _podman("rm", "-f", "-t", "0", name, check=False)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, request):
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    found = Nodes(_build_image(), key)
    request.addfinalizer(found.remove_all)
    return found


@pytest.fixture(scope="module")
def cluster(nodes):
    return nodes.start("vm", count=3)


def _node(name: str, operations=(), properties=None, node_type="tosca.nodes.SoftwareComponent"):
    return Node(name=name, type=node_type, types=(node_type,), kind="software",
                properties=dict(properties or {}), operations=tuple(operations), host="vm")


def _topology(*nodes, relationships=()):
    return Topology(file=str(FIXTURES / "template.yaml"), version=None, description=None,
                    metadata={}, inputs=(), nodes={n.name: n for n in nodes},
                    relationships=tuple(relationships), outputs=(), policies=(), groups=(),
                    order=tuple(n.name for n in nodes))


def _step(node: str, index: int = 0) -> Step:
    return Step(id=f"configure:{node}[{index}]", action="configure", kind="software",
                node=node, index=index)


def _connection(host: dict) -> dict:
    keys = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file",
            "private_address")
    return {k: host[k] for k in keys}


# -- inventory (no containers needed, but kept beside its users) ------------------------------

def test_inventory_groups_hosts_and_jump_host(tmp_path):
    hosts = [{"node": "vm", "index": 0, "ansible_host": "127.0.0.1", "ansible_port": 2200,
              "ansible_ssh_private_key_file": "/k", "private_address": "10.0.0.5",
              "properties": {"size": 3, "unset": None}},
             {"node": "vm", "index": 1, "ansible_host": None, "private_address": "10.0.0.6",
              "jump_host": "root@127.0.0.1:2200",
              "ssh_options": {"KexAlgorithms": "curve25519-sha256"}}]
    inventory = build_inventory(hosts)
    group = inventory["all"]["children"]["vm"]["hosts"]
    assert set(group) == {"vm-0", "vm-1"}
    assert group["vm-0"]["ansible_port"] == 2200 and group["vm-0"]["size"] == 3
    assert "unset" not in group["vm-0"]
    assert "ProxyCommand" not in group["vm-0"]["ansible_ssh_common_args"]
    assert group["vm-1"]["ansible_host"] == "10.0.0.6"
    proxy = group["vm-1"]["ansible_ssh_common_args"]
    assert "-o ProxyCommand=" in proxy and "-p 2200" in proxy and "root@127.0.0.1" in proxy
    assert "-W %h:%p" in proxy
    # a host's ssh_options reach ssh, and the jump to it; not another host's
    assert proxy.count("-o KexAlgorithms=curve25519-sha256") == 2
    assert "KexAlgorithms" not in group["vm-0"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=no" in group["vm-1"]["ansible_ssh_common_args"]
    assert cluster_hosts(hosts)[1] == {"name": "vm-1", "address": "10.0.0.6"}


# -- the base role ----------------------------------------------------------------------------

def test_base_role_on_three_nodes_is_idempotent(nodes, cluster, tmp_path):
    pub = nodes.key.with_suffix(".pub").read_text().strip()
    extravars = {"os_users": [{"name": "alice", "ssh_key": pub, "sudo": True},
                              {"name": "bob", "ssh_key": pub, "sudo": False}],
                 "cluster_hosts": cluster_hosts(cluster)}
    first = run_operation(playbooks_dir() / "base.yml", cluster, data_dir=tmp_path,
                          operation="Standard.configure", extravars=extravars,
                          logs_dir=tmp_path / "logs")
    assert first.status == "successful" and first.changed() > 0
    for host in cluster:
        assert "alice" in nodes.exec(host, "getent", "passwd", "alice")
        assert "bob" in nodes.exec(host, "getent", "passwd", "bob")
        assert pub in nodes.exec(host, "cat", "/home/alice/.ssh/authorized_keys")
        assert "NOPASSWD" in nodes.exec(host, "cat", "/etc/sudoers.d/90-alice")
        hosts_file = nodes.exec(host, "cat", "/etc/hosts")
        for other in cluster:
            assert f"{other['private_address']} vm-{other['index']}" in hosts_file
        assert nodes.exec(host, "cat", "/etc/hostname").strip() == f"vm-{host['index']}"
        assert (tmp_path / "logs" / f"vm-{host['index']}.log").read_text().count("PLAY") >= 1
    second = run_operation(playbooks_dir() / "base.yml", cluster, data_dir=tmp_path,
                           operation="Standard.configure", extravars=extravars)
    assert second.changed() == 0, second.stdout
    # alice may log in with the key and use sudo; bob has no sudo
    ssh = ["ssh", "-i", str(nodes.key), "-p", str(cluster[0]["ansible_port"]),
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "BatchMode=yes"]
    assert subprocess.run(ssh + ["alice@127.0.0.1", "sudo", "-n", "true"],
                          check=False).returncode == 0
    assert subprocess.run(ssh + ["bob@127.0.0.1", "sudo", "-n", "true"],
                          check=False, capture_output=True).returncode != 0


def test_base_role_installs_python3_on_a_node_without_it(nodes, tmp_path):
    # The runner's default strategy is Mitogen's, whose connection needs python3 on the
    # node: the role's check reaches the node over plain ssh to install it first.
    bare = nodes.start("bare")[0]
    nodes.exec(bare, "sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "
               "--purge python3 python3.11 python3-minimal python3.11-minimal >/dev/null")
    assert "missing" in nodes.exec(bare, "sh", "-c", "command -v python3 || echo missing")
    result = run_operation(playbooks_dir() / "base.yml", [bare], data_dir=tmp_path,
                           extravars={"os_users": [{"name": "carol"}]})
    assert result.status == "successful", result.stdout[-2000:]
    assert "python3" in nodes.exec(bare, "sh", "-c", "command -v python3")
    assert "carol" in nodes.exec(bare, "getent", "passwd", "carol")


# -- the configurator -------------------------------------------------------------------------

def test_operation_outputs_become_attributes(cluster, tmp_path):
    playbook = str(FIXTURES / "outputs.yml")
    node = _node("app", [
        Operation("Standard", "create", playbook, {"greeting": "hello"}),
        Operation("Standard", "configure", playbook,
                  {"greeting": "configured",
                   "peer_address": Deferred("get_attribute", ("HOST", "private_address"),
                                            node="vm"),
                   "unresolved": Deferred("get_attribute", ("SELF", "nothing"), node="app")}),
        Operation("Standard", "stop", playbook, {"greeting": "never"})])
    seen = []

    def lookup(ref):
        seen.append(ref)
        return "10.1.2.3" if ref.args[1:] == ("private_address",) else None

    configurator = AnsibleConfigurator(tmp_path / "data", lookup=lookup)
    attributes = configurator.configure(_step("app"), _topology(node),
                                        _connection(cluster[0]), {})
    assert attributes["state"] == "started"
    assert attributes["operations"] == ["Standard.create", "Standard.configure"]
    assert attributes["operation_outputs"]["Standard.create"]["greeting"] == "hello"
    assert attributes["operation_outputs"]["Standard.configure"]["peer"] == "10.1.2.3"
    assert attributes["greeting"] == "configured"  # the later operation's value wins
    assert attributes["operation_seen"] == "configure"
    assert len(seen) == 2
    log = (tmp_path / "data" / "logs" / "app-0.log").read_text()
    assert "=== Standard.create ===" in log and "=== Standard.configure ===" in log
    assert not list((tmp_path / "data" / "runs").iterdir())  # private run dirs removed


def test_failing_playbook_names_node_operation_task_and_message(cluster, tmp_path):
    node = _node("broken", [Operation("Standard", "configure", str(FIXTURES / "fail.yml"), {})])
    configurator = AnsibleConfigurator(tmp_path)
    with pytest.raises(ContextualizationError) as caught:
        configurator.configure(_step("broken", 2), _topology(node), _connection(cluster[1]), {})
    message = str(caught.value)
    assert "broken[2]" in message
    assert "Standard.configure" in message
    assert "Break the deployment" in message
    assert "disk on fire" in message
    assert "disk on fire" in (tmp_path / "logs" / "broken-2.log").read_text()


def test_unreachable_host_is_a_contextualization_error(tmp_path, nodes):
    node = _node("ghost", [Operation("Standard", "create", str(FIXTURES / "outputs.yml"),
                                     {"greeting": "x"})])
    host = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root",
            "ansible_ssh_private_key_file": str(nodes.key), "private_address": "10.9.9.9"}
    with pytest.raises(ContextualizationError, match=r"ghost\[0\].*Standard.create"):
        AnsibleConfigurator(tmp_path, timeout=60).configure(_step("ghost"), _topology(node),
                                                            host, {})


def test_implementation_resolution(tmp_path):
    configurator = AnsibleConfigurator(tmp_path, template_dir=FIXTURES)
    assert configurator.resolve_implementation("playbooks/base.yml") == \
        playbooks_dir() / "base.yml"
    assert configurator.resolve_implementation("fail.yml") == FIXTURES / "fail.yml"
    with pytest.raises(ContextualizationError, match="not found"):
        configurator.resolve_implementation("playbooks/nope.yml")


def test_relationship_operation_writes_marker(nodes, cluster, tmp_path):
    marker = "playbooks/marker.yml"
    rel = Relationship("client", "server", "server", "tosca.relationships.ConnectsTo",
                       "ConnectsTo", operations=(
                           Operation("Configure", "pre_configure_source", marker, {}),
                           Operation("Configure", "add_target", marker, {})))
    source = {**_connection(cluster[0]), "node": "client", "index": 0}
    target = {**_connection(cluster[1]), "node": "server", "index": 0}
    configurator = AnsibleConfigurator(tmp_path)
    outputs = {}
    for op in rel.operations:
        outputs[op.name] = configurator.run_relationship(rel, op, source, target)
    for name in ("pre_configure_source", "add_target"):
        path = outputs[name]["marker"]
        assert path.endswith(f"{name}-client-server")
        content = nodes.exec(cluster[0], "cat", path)  # both run on the source's host
        assert "source=client" in content and "target=server" in content


# -- JupyterLab -------------------------------------------------------------------------------

def test_jupyterlab_installs_starts_and_answers(nodes, tmp_path):
    host = nodes.start("lab", ports=(8888,), ca_bundle=True)[0]
    node = _node("jupyterlab", [
        Operation("Standard", "create", "playbooks/jupyterlab.yml",
                  {"version": "4.2", "python_packages": [], "gpu_enabled": False}),
        Operation("Standard", "configure", "playbooks/jupyterlab.yml",
                  {"port": 8888, "token": None, "notebook_dir": "/srv/notebooks",
                   "spark_master_address": Deferred("get_attribute",
                                                    ("SELF", "spark", "ip_address"),
                                                    node="jupyterlab")}),
        Operation("Standard", "start", "playbooks/jupyterlab.yml", {"port": 8888})])
    configurator = AnsibleConfigurator(tmp_path, timeout=540)
    connection = {**_connection(host), "vars": {"jupyterlab_public_host": "127.0.0.1"}}
    try:
        attributes = configurator.configure(_step("jupyterlab"), _topology(node),
                                            connection, {})
    except ContextualizationError as exc:
        if "Install JupyterLab and the extra packages" in str(exc):
            pytest.fail("pip inside the container could not install jupyterlab from PyPI "
                        f"(is the host CA bundle {HOST_CA} trusted? PIP_CERT is set to "
                        f"/etc/ssl/certs/host-ca.crt when mounted): {exc}")
        raise
    token = attributes["jupyter_token"]
    assert len(token) >= 32
    assert attributes["jupyter_url"] == f"http://127.0.0.1:8888/lab?token={token}"
    port = host["published"][8888]
    url = f"http://127.0.0.1:{port}/lab?token={token}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    # idempotent: configuring again keeps the token and the one running server
    again = configurator.configure(_step("jupyterlab"), _topology(node), connection, {})
    assert again["jupyter_token"] == token
    pids = nodes.exec(host, "pgrep", "-f", "bin/jupyter-lab").split()
    assert len(pids) == 1, pids
    assert pids[0] == nodes.exec(host, "cat", "/run/jupyterlab.pid").strip()

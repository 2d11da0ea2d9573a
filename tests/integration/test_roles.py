"""The cluster roles under playbooks/roles: layout, syntax, ansible-lint, and the
configuration they render from TOSCA inputs, checked in check mode (--check --diff)
against a Debian 12 container.

What cannot run on these machines is exercised in check mode only: the NVIDIA driver
(no GPU), the CVMFS client (its packages come only from CERN's repository), InfiniBand
(no HCA), HTCondor (no daemons in Debian 12; HTCondor's repository is out of reach) and
Kubernetes (no kubeadm distribution reachable). Slurm, Spark and JupyterHub run for real
in test_cluster_slurm.py, test_cluster_spark.py and test_cluster_jupyterhub.py."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PLAYBOOKS = ROOT / "playbooks"
ROLES = sorted(p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir())
CLUSTER_ROLES = ("nvidia_gpu", "cvmfs", "infiniband", "container_runtime", "jupyterhub",
                 "kubernetes", "htcondor", "spark", "slurm")
IMAGE = "localhost/orchestrator-node:bookworm"
VENV_BIN = Path(os.sys.executable).parent


# -- layout, syntax, lint (no container) ---------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_role_has_galaxy_layout_and_documents_its_platforms(role):
    folder = PLAYBOOKS / "roles" / role
    for part in ("defaults", "tasks", "handlers", "meta"):
        assert (folder / part / "main.yml").is_file(), f"{role}: {part}/main.yml missing"
    meta = yaml.safe_load((folder / "meta" / "main.yml").read_text())["galaxy_info"]
    platforms = {p["name"] for p in meta["platforms"]}
    assert "Debian" in platforms and meta["description"]
    if role in CLUSTER_ROLES:
        assert "Ubuntu" in platforms
        assert (folder / "README.md").is_file(), f"{role}: README.md missing"


def test_every_playbook_names_an_existing_role_and_passes_syntax_check():
    playbooks = sorted(PLAYBOOKS.glob("*.yml"))
    for playbook in playbooks:
        for play in yaml.safe_load(playbook.read_text()):
            for role in play.get("roles", []):
                assert (PLAYBOOKS / "roles" / role).is_dir(), f"{playbook.name}: {role}"
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i",
                           "localhost,", *map(str, playbooks)], capture_output=True,
                          text=True, cwd=PLAYBOOKS, timeout=300,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_software_types_name_existing_playbooks():
    types = yaml.safe_load((ROOT / "tosca_types" / "orchestrator" / "software.yaml").read_text())
    named = {op["implementation"] for node in types["node_types"].values()
             for op in node.get("interfaces", {}).get("Standard", {}).values()
             if isinstance(op, dict)}
    assert named and all((ROOT / path).is_file() for path in named), named


def test_ansible_lint_is_clean():
    lint = shutil.which("ansible-lint", path=str(VENV_BIN)) or shutil.which("ansible-lint")
    if lint is None:
        if os.environ.get("CI"):
            raise RuntimeError("ansible-lint is required in CI (pip install ansible-lint)")
        pytest.skip("ansible-lint is not installed")
    done = subprocess.run([lint, "--offline", "--nocolor", "--format=pep8"],
                          capture_output=True, text=True, cwd=PLAYBOOKS, timeout=600,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
                               "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# -- check mode against a container ----------------------------------------------------------

class Target:
    """One Debian 12 container running sshd, reached as root with a fresh key."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key = folder / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)],
                       check=True)
        self.label = f"orchestrator-test=roles-{uuid.uuid4().hex[:12]}"
        start = ("mkdir -p /run/sshd /root/.ssh && printf '%s\\n' \"$KEY\" > "
                 "/root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && "
                 "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e")
        self.id = subprocess.run(
            ["podman", "--runtime", "runc", "run", "-d", "--label", self.label,
             "--ulimit", "nofile=10000:10000", "--ulimit", "nproc=10000:10000",
             "--hostname", "roles-check", "-p", "127.0.0.1::22/tcp",
             "-e", f"KEY={(folder / 'id_ed25519.pub').read_text().strip()}",
             "--entrypoint", "/bin/sh", IMAGE, "-c", start],
            check=True, capture_output=True, text=True).stdout.strip()
        port = subprocess.run(["podman", "port", self.id, "22/tcp"], check=True,
                              capture_output=True, text=True).stdout.split(":")[-1]
        self.port = int(port)
        deadline = time.monotonic() + 60
        while not self._ssh_answers():
            assert time.monotonic() < deadline, "sshd of the check target never answered"
            time.sleep(0.5)
        # what the packages' create step would have made: their system users
        self.exec("for u in slurm munge condor; do id $u >/dev/null 2>&1 || "
                  "useradd --system $u; done")

    def _ssh_answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                return conn.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def exec(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", "exec", self.id, "sh", "-c", command],
                              capture_output=True, text=True, check=check)

    def remove(self) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "0", self.id], capture_output=True)

    def check(self, playbook: str | Path, **extravars) -> "Rendered":
        """Run ``playbook`` in check mode with ``extravars``; what it would write."""
        import ansible_runner

        private = self.folder / f"run-{uuid.uuid4().hex[:8]}"
        private.mkdir()
        run = ansible_runner.run(
            private_data_dir=str(private),
            playbook=str(PLAYBOOKS / playbook if isinstance(playbook, str) else playbook),
            inventory={"all": {"hosts": {"node-0": {
                "ansible_host": "127.0.0.1", "ansible_port": self.port,
                "ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                           "-o UserKnownHostsFile=/dev/null",
                "private_address": "10.88.3.7"}}}},
            extravars=extravars, cmdline="--check --diff", quiet=True,
            envvars={"ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
                     "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "True",
                     "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"})
        rendered = Rendered()
        for event in run.events:
            data = event.get("event_data") or {}
            res = data.get("res") or {}
            for item in [res, *(res.get("results") or [])]:
                diffs = item.get("diff") if isinstance(item, dict) else None
                for diff in ([diffs] if isinstance(diffs, dict) else diffs or []):
                    args = (item.get("invocation") or {}).get("module_args") or {}
                    dest = item.get("dest") or args.get("dest") or args.get("path") or \
                        (diff.get("before_header") or "").removesuffix(" (content)")
                    if "after" in diff and dest:
                        rendered.files[dest] = diff["after"]
                if isinstance(item, dict) and item.get("msg") and event["event"] == "runner_on_ok":
                    rendered.messages.append(str(item["msg"]))
            if event.get("event") == "playbook_on_stats":
                rendered.stats = {k: v for k, v in (data.get("artifact_data") or {}).items()
                                  if k != "_run"}
        stdout = Path(run.config.artifact_dir, "stdout")
        rendered.stdout = stdout.read_text() if stdout.exists() else ""
        assert run.status == "successful", rendered.stdout[-4000:]
        return rendered


class Rendered:
    def __init__(self):
        self.files: dict[str, str] = {}
        self.messages: list[str] = []
        self.stats: dict = {}
        self.stdout = ""

    def file(self, path: str) -> str:
        assert path in self.files, f"{path} not rendered; rendered: {sorted(self.files)}"
        return self.files[path]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    pytest.importorskip("ansible_runner", reason="needs the `ansible` extra")
    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            raise RuntimeError("podman is required in CI (.ci/containers.sh)")
        pytest.skip("podman is not installed")
    from orchestrator.providers.local.image import ensure_image

    ensure_image(IMAGE)  # the local provider's base image, built once when missing
    node = Target(tmp_path_factory.mktemp("roles"))
    try:
        yield node
    finally:
        node.remove()


def _derived(target: Target, purpose: str, algorithm: str) -> str:
    seed = f"orchestrator-{purpose}:" + target.key.read_text().rstrip("\n")
    return hashlib.new(algorithm, seed.encode()).hexdigest()


@pytest.mark.slow
def test_cvmfs_renders_repositories_proxy_and_quota(target):
    rendered = target.check("cvmfs.yml", tosca_operation="configure",
                            repositories=["cms.cern.ch", "sft.cern.ch"],
                            proxy="http://squid.example.org:3128|http://squid2:3128",
                            quota="20 GB", mount_mode="static")
    local = rendered.file("/etc/cvmfs/default.local")
    assert "CVMFS_REPOSITORIES=cms.cern.ch,sft.cern.ch\n" in local
    assert "CVMFS_HTTP_PROXY='http://squid.example.org:3128|http://squid2:3128'\n" in local
    assert "CVMFS_QUOTA_LIMIT=19073\n" in local  # 20 GB = 19073 MiB
    assert "CVMFS_CLIENT_PROFILE" not in local
    direct = target.check("cvmfs.yml", tosca_operation="configure",
                          repositories=["atlas.cern.ch"], quota="4 GiB")
    assert "CVMFS_CLIENT_PROFILE=single" in direct.file("/etc/cvmfs/default.local")
    assert "CVMFS_QUOTA_LIMIT=4096\n" in direct.file("/etc/cvmfs/default.local")


@pytest.mark.slow
def test_slurm_worker_renders_gres_and_dynamic_registration(target):
    rendered = target.check("slurm.yml", tosca_operation="configure", role="worker",
                            gres_gpus=4, infiniband=True, controller_address="10.88.3.2",
                            controller_hostname="controller-vm-0", cluster_name="gpucluster",
                            partition="gpu")
    assert rendered.file("/etc/slurm/gres.conf").splitlines()[-1] == \
        "Name=gpu File=/dev/nvidia[0-3]"
    conf = rendered.file("/etc/slurm/slurm.conf")
    assert "SlurmctldHost=controller-vm-0(10.88.3.2)\n" in conf
    assert "PartitionName=gpu Nodes=ALL Default=YES" in conf and "GresTypes=gpu" in conf
    munge = target.check(PLAYBOOKS / "slurm.yml", tosca_operation="configure", role="worker",
                         controller_address="10.88.3.2")
    assert "/etc/slurm/gres.conf" not in munge.files  # no GPUs, no gres.conf


@pytest.mark.slow
def test_kubernetes_worker_renders_the_join_command(target):
    rendered = target.check("kubernetes_worker.yml", tosca_operation="configure",
                            api_server_address="10.88.3.2", ca_cert_hash="ab" * 32,
                            gpu_enabled=True, node_labels={"accelerator": "nvidia"})
    token = _derived(target, "kubeadm", "sha256")
    join = yaml.safe_load(rendered.file("/etc/kubernetes/kubeadm-join.yaml"))
    assert join["kind"] == "JoinConfiguration"
    bootstrap = join["discovery"]["bootstrapToken"]
    assert bootstrap["apiServerEndpoint"] == "10.88.3.2:6443"
    assert bootstrap["token"] == f"{token[:6]}.{token[6:22]}"
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", bootstrap["token"])
    assert bootstrap["caCertHashes"] == ["sha256:" + "ab" * 32]
    labels = join["nodeRegistration"]["kubeletExtraArgs"]["node-labels"].split(",")
    assert sorted(labels) == ["accelerator=nvidia", "nvidia.com/gpu.present=true"]
    assert rendered.file("/etc/kubernetes/join-command") == \
        "kubeadm join --config /etc/kubernetes/kubeadm-join.yaml\n"
    containerd = rendered.file("/etc/containerd/config.toml")
    assert 'default_runtime_name = "nvidia"' in containerd
    front = target.check("kubernetes_frontend.yml", tosca_operation="configure",
                         advertise_address="10.88.3.2", pod_network_cidr="10.250.0.0/16",
                         version="1.31")
    init = list(yaml.safe_load_all(front.file("/etc/kubernetes/kubeadm-init.yaml")))
    assert init[0]["bootstrapTokens"][0]["token"] == bootstrap["token"]  # same cluster
    assert init[1]["networking"]["podSubnet"] == "10.250.0.0/16"
    assert init[1]["kubernetesVersion"] == "stable-1.31"


@pytest.mark.slow
def test_htcondor_renders_roles_security_and_gpu_discovery(target):
    worker = target.check("htcondor.yml", tosca_operation="configure", role="worker",
                          condor_host="10.88.3.2", gpu_discovery=True)
    conf = worker.file("/etc/condor/config.d/50-orchestrator.conf")
    assert "CONDOR_HOST = 10.88.3.2\n" in conf and "use ROLE : Execute\n" in conf
    assert "use FEATURE : GPUs\n" in conf and "use FEATURE : PartitionableSlot\n" in conf
    assert "use SECURITY : RECOMMENDED_v9_0" in conf
    manager = target.check("htcondor.yml", tosca_operation="configure",
                           role="central_manager", pool_name="ml-pool")
    conf = manager.file("/etc/condor/config.d/50-orchestrator.conf")
    assert "use ROLE : CentralManager\n" in conf and "CONDOR_HOST = 10.88.3.7\n" in conf
    assert "COLLECTOR_NAME = ml-pool" in conf
    assert manager.stats == {"ip_address": "10.88.3.7"}


@pytest.mark.slow
def test_container_runtime_renders_the_nvidia_runtime(target):
    docker = target.check("container_runtime.yml", tosca_operation="configure",
                          runtime="docker", gpu_support=True)
    daemon = json.loads(docker.file("/etc/docker/daemon.json"))
    assert daemon["default-runtime"] == "nvidia"
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    plain = target.check("container_runtime.yml", tosca_operation="configure",
                         runtime="containerd")
    assert 'default_runtime_name = "runc"' in plain.file("/etc/containerd/config.toml")


@pytest.mark.slow
def test_infiniband_renders_the_mpi_environment_and_ipoib_address(target):
    rendered = target.check("infiniband.yml", tosca_operation="configure", mpi="openmpi",
                            ipoib_cidr="10.200.0.0/16")
    assert "export OMPI_MCA_pml=ucx" in rendered.file("/etc/profile.d/orchestrator-mpi.sh")
    assert rendered.stats["ipoib_address"] == "10.200.3.7"  # from private address 10.88.3.7
    assert any("no InfiniBand HCA" in m for m in rendered.messages)


@pytest.mark.slow
def test_nvidia_gpu_chooses_packages_per_distribution(target, tmp_path):
    probe = tmp_path / "probe.yml"
    probe.write_text(yaml.safe_dump([{
        "name": "Probe", "hosts": "all", "gather_facts": True,
        "vars_files": [str(PLAYBOOKS / "roles" / "nvidia_gpu" / "defaults" / "main.yml")],
        "tasks": [{"name": "Return the choices", "ansible.builtin.set_stats": {"data": {
            "distro": "{{ nvidia_gpu_cuda_distro | trim }}",
            "packages": "{{ nvidia_gpu_driver_packages }}"}}}]}]))
    debian = target.check(probe, driver_version="535")
    assert debian.stats == {"distro": "debian12", "packages": ["cuda-drivers-535"]}
    ubuntu = target.check(probe, driver_version="550", nvidia_gpu_driver_source="distribution",
                          ansible_distribution="Ubuntu", ansible_distribution_version="22.04")
    assert ubuntu.stats == {"distro": "ubuntu2204", "packages": [
        "nvidia-driver-550-server", "nvidia-utils-550-server"]}
    rendered = target.check("nvidia_gpu.yml", tosca_operation="configure", mig_profile="1g.10gb")
    assert any("no NVIDIA PCI device" in m for m in rendered.messages)


# -- what needs hardware or networks these machines do not have ------------------------------

def test_nvidia_gpu_on_real_hardware():
    if not any(Path(p).read_text().strip() == "0x10de"
               for p in map(str, Path("/sys/bus/pci/devices").glob("*/vendor"))):
        pytest.skip("no NVIDIA GPU (no PCI device of vendor 0x10de) on this machine: the "
                    "driver install, MIG partitioning and the nvidia-smi check need one")
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c",
                           "local", str(PLAYBOOKS / "nvidia_gpu.yml"), "-e",
                           "tosca_operation=configure"], capture_output=True, text=True,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles")})
    assert done.returncode == 0, done.stdout[-3000:]


def test_cvmfs_mounts_for_real():
    if not os.environ.get("ORCHESTRATOR_TEST_CVMFS"):
        pytest.skip("the CVMFS client comes only from CERN's repository "
                    "(cvmrepo.s3.cern.ch) and mounts need a CERN Stratum 1 or a squid: "
                    "neither is reachable here (set ORCHESTRATOR_TEST_CVMFS=1 where they are)")


def test_infiniband_fabric_for_real():
    if not any(Path("/sys/class/infiniband").glob("*")):
        pytest.skip("no InfiniBand HCA (/sys/class/infiniband is empty): IPoIB and "
                    "ibv_devinfo need one")


def test_htcondor_pool_for_real():
    pytest.skip("HTCondor's daemons are not in Debian 12 and HTCondor's repository "
                "(research.cs.wisc.edu) is out of reach: the pool is checked in check mode")


def test_kubernetes_cluster_for_real():
    pytest.skip("no Kubernetes distribution can be installed here (pkgs.k8s.io is out of "
                "reach; no kubeadm, kubelet or k3s package): the join is checked in "
                "check mode")

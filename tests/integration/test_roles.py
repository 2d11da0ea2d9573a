"""The cluster roles under playbooks/roles: layout, syntax, ansible-lint, and the
configuration they render from TOSCA inputs, checked in check mode (--check --diff)
against a Debian 12 container.

What needs hardware or networks a machine may lack (the NVIDIA driver, CVMFS, InfiniBand,
HTCondor) is checked here in check mode, and runs for real in test_roles_hardware.py where
the machine has it. Slurm, Spark and JupyterHub run for real in test_cluster_slurm.py,
test_cluster_spark.py and test_cluster_jupyterhub.py."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.role_nodes import PLAYBOOKS, VENV_BIN, Target, node

ROLES = sorted(p.name for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir())
CLUSTER_ROLES = ("nvidia_gpu", "cvmfs", "infiniband", "container_runtime", "jupyterhub",
                 "kubernetes", "htcondor", "spark", "slurm")


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

@pytest.fixture(scope="module")
def target(tmp_path_factory):
    with node(tmp_path_factory.mktemp("roles"), hostname="roles-check") as made:
        yield made


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

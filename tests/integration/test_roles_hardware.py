"""The roles that need hardware or networks, run for real where the machine has them.

Each test first probes for what its role needs: a device node, a loaded host driver, a
repository the role installs from, a server to mount from. Where something is missing it
skips and says what was probed and found wanting. Where everything is there it runs the
role for real in a throwaway node (the local provider's Debian 12 container, given the
devices it needs), never on the machine running the tests, and asserts what the role did.
Their rendered configuration is checked in check mode on every machine (test_roles.py).

Kubernetes has no test here: kubeadm needs systemd running the kubelet on its node, which
the throwaway node has not; its configuration is checked in check mode, its manifests run
under `podman kube play` and its API flows against a loopback API server."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.role_nodes import PLAYBOOKS, node

pytestmark = pytest.mark.slow

CVMFS_REPOSITORY = "sft.cern.ch"
CVMFS_STRATUM_ONE = "http://cvmfs-stratum-one.cern.ch/cvmfs"


def _defaults(role: str) -> dict:
    return yaml.safe_load((PLAYBOOKS / "roles" / role / "defaults" / "main.yml").read_text())


def _unreachable(url: str, timeout: float = 8.0) -> str | None:
    """Why ``url`` cannot be fetched (None when it answers 2xx)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return None if response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"


# -- probes: None when the real check can run, else why not ---------------------------------

def _nvidia_gpus() -> tuple[list[str], str | None]:
    """(the NVIDIA GPUs' device nodes, why a node cannot be given them)."""
    pci = [p.parent.name for p in Path("/sys/bus/pci/devices").glob("*/vendor")
           if p.read_text().strip() == "0x10de"]
    if not pci:
        return [], "no NVIDIA GPU: no PCI device of vendor 0x10de under /sys/bus/pci/devices"
    gpus = sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    if not gpus or not Path("/dev/nvidiactl").exists():
        return [], (f"{len(pci)} NVIDIA PCI device(s) but no /dev/nvidia0 or /dev/nvidiactl: "
                    "the host's driver is not loaded, and a container cannot load one")
    specs = [p for folder in ("/etc/cdi", "/var/run/cdi") for p in Path(folder).glob("*")
             if p.is_file() and "nvidia.com/gpu" in p.read_text(errors="replace")]
    if not specs:
        return [], ("no CDI specification for nvidia.com/gpu in /etc/cdi or /var/run/cdi: "
                    "without one (`nvidia-ctk cdi generate`) a container gets no GPU and no "
                    "nvidia-smi")
    return gpus, None


def _infiniband() -> tuple[list[str], list[str], str | None]:
    """(the HCAs, their device nodes for a container, why a node cannot be given them)."""
    hcas = sorted(p.name for p in Path("/sys/class/infiniband").glob("*"))
    if not hcas:
        return [], [], "no InfiniBand HCA: /sys/class/infiniband is empty or missing"
    devices = sorted(str(p) for p in Path("/dev/infiniband").glob("*"))
    if not any("uverbs" in d for d in devices):
        return hcas, [], (f"HCA(s) {', '.join(hcas)} but no /dev/infiniband/uverbs*: the "
                          "host's ib_uverbs module is not loaded")
    return hcas, devices, None


def _cvmfs_missing() -> str | None:
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse on this machine: CVMFS mounts repositories through FUSE"
    release = _defaults("cvmfs")["cvmfs_release_deb"]
    if (why := _unreachable(release)) is not None:
        return (f"the CVMFS client comes only from CERN's repository, and {release} cannot "
                f"be fetched ({why})")
    published = f"{CVMFS_STRATUM_ONE}/{CVMFS_REPOSITORY}/.cvmfspublished"
    if (why := _unreachable(published)) is not None:
        return f"no CVMFS Stratum 1 answers ({published}: {why}): nothing to mount"
    return None


def _htcondor_missing() -> str | None:
    defaults = _defaults("htcondor")
    version = defaults["htcondor_version"].split("default('")[-1].split("'")[0]
    key = f"{defaults['htcondor_repo_base']}/keys/HTCondor-{version}-Key"
    if (why := _unreachable(key)) is not None:
        return (f"the role installs HTCondor's daemons from HTCondor's repository, and its "
                f"key {key} cannot be fetched ({why})")
    return None


# -- the real checks -------------------------------------------------------------------------

def test_nvidia_gpu_on_real_hardware(tmp_path):
    gpus, missing = _nvidia_gpus()
    if missing:
        pytest.skip(missing)
    with node(tmp_path, "gpu-node", ["--device", "nvidia.com/gpu=all"]) as gpu_node:
        # the host's driver serves the node (a container cannot install a kernel driver):
        # what runs is the role's configure step, MIG left alone, nvidia-smi's check
        done = gpu_node.apply("nvidia_gpu.yml", tosca_operation="configure",
                              gpu_count=len(gpus), container_toolkit=False)
        seen = done.stats["gpus"]
        assert len(seen) == len(gpus), (seen, gpus)
        assert all(line.startswith("GPU ") for line in seen), seen
        assert not any("no NVIDIA PCI device" in m for m in done.messages)


def test_infiniband_fabric_for_real(tmp_path):
    hcas, devices, missing = _infiniband()
    if missing:
        pytest.skip(missing)
    args = [a for device in devices for a in ("--device", device)]
    args += ["--cap-add", "IPC_LOCK"]  # verbs register memory
    with node(tmp_path, "ib-node", args) as ib_node:
        # IPoIB needs modprobe, which a container may not do: the RDMA stack, the HCA check
        done = ib_node.apply("infiniband.yml", tosca_operation="all", ipoib=False, mpi="none")
        listed = {line.strip() for line in done.stats["ib_devices"]}
        assert set(hcas) <= listed, (hcas, done.stats["ib_devices"])
        assert not any("no InfiniBand HCA" in m for m in done.messages)
        assert ib_node.exec("ibv_devinfo -l").returncode == 0


def test_cvmfs_mounts_for_real(tmp_path):
    missing = _cvmfs_missing()
    if missing:
        pytest.skip(missing)
    args = ["--device", "/dev/fuse", "--cap-add", "SYS_ADMIN",
            "--security-opt", "apparmor=unconfined"]
    with node(tmp_path, "cvmfs-node", args) as cvmfs_node:
        cvmfs_node.apply("cvmfs.yml", tosca_operation="all", repositories=[CVMFS_REPOSITORY],
                         mount_mode="static", quota="4 GiB")
        probe = cvmfs_node.exec(f"cvmfs_config probe {CVMFS_REPOSITORY}", check=False)
        assert probe.returncode == 0 and "OK" in probe.stdout, probe.stdout + probe.stderr
        listing = cvmfs_node.exec(f"ls /cvmfs/{CVMFS_REPOSITORY}").stdout.split()
        assert listing, f"/cvmfs/{CVMFS_REPOSITORY} is mounted but empty"


def test_htcondor_pool_for_real(tmp_path):
    missing = _htcondor_missing()
    if missing:
        pytest.skip(missing)
    with node(tmp_path, "condor-node") as condor_node:
        condor_node.apply("htcondor.yml", tosca_operation="all", role="central_manager",
                          pool_name="test-pool")
        status = condor_node.exec("condor_status -any -af MyType", check=False)
        assert status.returncode == 0, status.stdout + status.stderr
        daemons = set(status.stdout.split())
        assert {"Collector", "Negotiator", "DaemonMaster"} <= daemons, daemons

"""Slurm for real: the slurm-cluster catalogue template deployed through the engine into
three local-provider containers (Debian 12: slurm-wlm and munge from Debian), a job
submitted with sbatch that runs on both workers, idempotence of the role, and a delete
that leaves no container, network or volume behind."""
from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.fixtures.roles.deployed import Deployed, require_podman_and_ansible

require_podman_and_ansible()
pytestmark = pytest.mark.slow

TEMPLATE = str(ROOT / "templates" / "slurm-cluster.yaml")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployed = Deployed(tmp_path_factory.mktemp("slurm"), TEMPLATE, "slurm",
                        ["worker_count=2", "cluster_name=ci", "partition=work"])
    try:
        assert deployed.applied.run.ok, deployed.failure()
        yield deployed
    finally:
        deployed.close()


def _workers(cluster) -> list[str]:
    """Host names of worker_vm[0] and worker_vm[1], in index order."""
    return [cluster.ssh("worker_vm", i, "hostname").stdout.strip() for i in (0, 1)]


def test_workers_register_in_the_partition(cluster):
    info = cluster.ssh("controller_vm", 0, "sinfo -h -p work -o '%D %T %N'").stdout.split()
    assert info[0] == "2" and info[1] == "idle", info
    conf = cluster.ssh("worker_vm", 1, "cat /etc/slurm/slurm.conf").stdout
    assert "ClusterName=ci" in conf and "PartitionName=work Nodes=ALL" in conf
    address = cluster.orch.outputs("slurm")["controller_address"]
    assert f"({address})" in conf  # SlurmctldHost=<name>(<address>) from the controller


def test_sbatch_job_runs_on_both_workers_and_completes(cluster):
    submitted = cluster.ssh("controller_vm", 0,
                            "sbatch --parsable --wait -N 2 -p work -o /tmp/job-%j.out "
                            "--wrap 'srun hostname'", timeout=300).stdout.strip()
    job = submitted.split(";")[0]
    state = cluster.ssh("controller_vm", 0, f"scontrol show job {job}").stdout
    assert "JobState=COMPLETED" in state and "ExitCode=0:0" in state, state
    nodes = re.search(r"\bNodeList=(\S+)", state).group(1)
    expanded = cluster.ssh("controller_vm", 0,
                           f"scontrol show hostnames {nodes}").stdout.split()
    workers = _workers(cluster)
    assert sorted(expanded) == sorted(workers)
    # the batch step ran on BatchHost; its output lists both workers' srun tasks
    batch_host = re.search(r"\bBatchHost=(\S+)", state).group(1)
    output = cluster.ssh("worker_vm", workers.index(batch_host),
                         f"cat /tmp/job-{job}.out").stdout.split()
    assert sorted(output) == sorted(workers)


def test_second_run_of_the_role_changes_nothing(cluster):
    for node, index in (("slurm_controller", 0), ("slurm_worker", 1)):
        changed = cluster.rerun(node, index)
        assert set(changed) == {"Standard.create", "Standard.configure", "Standard.start"}
        assert changed == dict.fromkeys(changed, 0), (node, changed)


def test_delete_leaves_nothing(cluster):
    assert cluster.delete()
    assert cluster.containers() == {"ps": [], "network": [], "volume": []}

"""The INDIGO-DataCloud Slurm cluster template (the corpus's slurm_cluster.yaml), unchanged,
deployed for real on the built-in local site with the native implementation of its
INDIGO Slurm types (playbooks/native.yaml: role `slurm`): a job submitted with sbatch runs
on the workers, and a delete leaves nothing behind. The template asks for Ubuntu 16.04;
the site catalogue declares the Debian node image as serving that request."""
from __future__ import annotations

import re

import pytest

from tests.conftest import CORPUS, require_corpus
from tests.fixtures.roles.deployed import (Deployed, foreign_os_site,
                                           require_podman_and_ansible)

require_podman_and_ansible()
pytestmark = pytest.mark.slow

TEMPLATE = CORPUS / "indigo-tosca-templates" / "slurm_cluster.yaml"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_corpus()
    deployed = Deployed(tmp_path_factory.mktemp("indigo-slurm"), str(TEMPLATE), "slurm",
                        ["wn_num=2"], site=foreign_os_site())
    try:
        assert deployed.applied.run.ok, deployed.failure()
        yield deployed
    finally:
        deployed.close()


def test_the_plan_names_the_native_implementation_and_the_declared_image(cluster):
    steps = {s.id: s for s in cluster.plan.steps}
    front = steps["configure software front_end[0]"]
    assert front.details["implementation"] == "native: tosca.nodes.indigo.LRMS.FrontEnd.Slurm"
    server = steps["apply compute fe_server[0]"]
    assert server.details["image"] == "debian-12-as-ubuntu-16.04"


def test_sbatch_job_runs_on_the_workers(cluster):
    workers = [cluster.ssh("wn_server", i, "hostname").stdout.strip() for i in (0, 1)]
    info = cluster.ssh("fe_server", 0, "sinfo -h -o '%D %T'").stdout.split()
    assert info[:2] == ["2", "idle"], info
    submitted = cluster.ssh("fe_server", 0, "sbatch --parsable --wait -N 2 -o /tmp/job-%j.out "
                            "--wrap 'srun hostname'", timeout=300).stdout.strip()
    job = submitted.split(";")[0]
    state = cluster.ssh("fe_server", 0, f"scontrol show job {job}").stdout
    assert "JobState=COMPLETED" in state and "ExitCode=0:0" in state, state
    nodes = re.search(r"\bNodeList=(\S+)", state).group(1)
    ran_on = cluster.ssh("fe_server", 0, f"scontrol show hostnames {nodes}").stdout.split()
    assert sorted(ran_on) == sorted(workers)


def test_outputs_give_the_cluster_addresses(cluster):
    outputs = cluster.orch.outputs("slurm")
    assert outputs["cluster_ip"] == "127.0.0.1"
    assert len(outputs["wn_ips"]) == 2


def test_delete_leaves_nothing(cluster):
    assert cluster.delete()
    assert cluster.containers() == {"ps": [], "network": [], "volume": []}

"""Spark for real: the spark-jupyter catalogue template deployed through the engine into
three local-provider containers (Debian 12, openjdk-17 from Debian, pyspark from PyPI):
a job computes a known result on both workers, the "PySpark (cluster)" kernel of the
master's JupyterLab runs a cell on the cluster, the role is idempotent, and delete
leaves nothing behind."""
from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.conftest import ROOT
from tests.fixtures.roles.deployed import Deployed, require_podman_and_ansible, run_cell

require_podman_and_ansible()
pytestmark = pytest.mark.slow

TEMPLATE = str(ROOT / "templates" / "spark-jupyter.yaml")
SETS = ["os_distribution=debian", "os_version=12", "master_num_cpus=2", "worker_num_cpus=2",
        "master_mem_size=8 GB", "worker_mem_size=8 GB", "python_packages=[]",
        "worker_count=2"]
JOB = """
import socket
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("orchestrator-check").getOrCreate()
rdd = spark.sparkContext.parallelize(range(1, 100001), 8)
print("SUM", rdd.map(lambda x: x * x).sum())
hosts = rdd.mapPartitions(lambda _: [socket.gethostname()]).distinct().collect()
print("HOSTS", ",".join(sorted(hosts)))
spark.stop()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    deployed = Deployed(tmp_path_factory.mktemp("spark"), TEMPLATE, "spark", SETS)
    try:
        assert deployed.applied.run.ok, deployed.failure()
        yield deployed
    finally:
        deployed.close()


def test_master_lists_both_workers(cluster):
    master_url = cluster.orch.outputs("spark")["spark_master_url"]
    address = master_url.removeprefix("spark://").split(":")[0]
    state = json.loads(cluster.ssh("master_vm", 0, "python3 -c \"import urllib.request; "
                                   f"print(urllib.request.urlopen('http://{address}:8080/json/')"
                                   ".read().decode())\"").stdout)
    assert state["status"] == "ALIVE" and state["aliveworkers"] == 2, state


def test_job_computes_the_known_sum_on_both_workers(cluster):
    cluster.ssh("master_vm", 0, f"cat > /tmp/job.py <<'EOF'\n{JOB}\nEOF")
    out = cluster.ssh("master_vm", 0, "bash -lc 'spark-submit /tmp/job.py 2>/dev/null'",
                      timeout=600).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line[:4] in ("SUM ", "HOST"))
    assert int(lines["SUM"]) == 100000 * 100001 * 200001 // 6
    workers = sorted(cluster.ssh("worker_vm", i, "hostname").stdout.strip() for i in (0, 1))
    assert lines["HOSTS"].split(",") == workers


def test_pyspark_kernel_of_jupyterlab_runs_on_the_cluster(cluster):
    url = urllib.parse.urlsplit(cluster.orch.outputs("spark")["jupyterlab_url"])
    token = urllib.parse.parse_qs(url.query)["token"][0]
    printed = run_cell(f"http://{url.netloc}", token, kernel="pyspark", code=(
        "from pyspark.sql import SparkSession\n"
        "sc = SparkSession.builder.getOrCreate().sparkContext\n"
        "print(sc.master, sc.parallelize(range(10), 4).sum())\n"
        "sc.stop()\n"))
    assert len(printed.split()) == 2, printed
    master, total = printed.split()
    assert master == cluster.orch.outputs("spark")["spark_master_url"] and total == "45"


def test_second_run_of_the_role_changes_nothing(cluster):
    for node, index in (("spark_master", 0), ("spark_worker", 1)):
        changed = cluster.rerun(node, index)
        assert set(changed) == {"Standard.create", "Standard.configure", "Standard.start"}
        assert changed == dict.fromkeys(changed, 0), (node, changed)


def test_delete_leaves_nothing(cluster):
    assert cluster.delete()
    assert cluster.containers() == {"ps": [], "network": [], "volume": []}

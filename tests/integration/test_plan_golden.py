"""Plan rendering against golden files (text and JSON), for a new deployment and for an
update diff. Regenerate after an intended change with UPDATE_GOLDEN=1."""
import json
import os
import re

import pytest

from orchestrator.cli.plan_view import plan_text
from orchestrator.providers import simulated
from tests import engine_support as es
from tests.conftest import FIXTURES, ROOT

GOLDEN = FIXTURES / "golden"


@pytest.fixture
def orch(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # plans name the template as given: keep it relative
    simulated.reset_all()
    sites = es.write_sites(tmp_path, es.site("cnaf", priority=10, latency={"boot": 0.5}),
                           es.site("recas", priority=5, latency={"boot": 1}))
    yield es.orchestrator(tmp_path, sites)
    simulated.reset_all()


def _normalise(plan, tmp_root) -> tuple[str, str]:
    data = plan.to_dict()
    data["sites_file"] = "<sites.yaml>"
    if data["deployment_id"]:
        data["deployment_id"] = "<id>"
    text = json.dumps(data, indent=2, sort_keys=True)
    text = re.sub(r"sim-[a-z]+-\d+", "<provider-id>", text)
    return plan_text(data), text


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text(), f"{name} differs (UPDATE_GOLDEN=1 to regenerate)"


def test_new_deployment_plan(orch, tmp_path):
    plan = orch.plan("tests/fixtures/golden/cluster-v1.yaml", name="golden").plan
    text, data = _normalise(plan, tmp_path)
    _check("plan-new.txt", text)
    _check("plan-new.json", data)
    assert plan.summary_line() == "5 to create, 0 to update, 0 to delete, 4 to configure"
    assert plan.estimated_duration_s >= 0.5  # the critical path includes a boot


def test_update_diff_plan(orch, tmp_path):
    first = orch.plan("tests/fixtures/golden/cluster-v1.yaml", name="golden").plan
    assert orch.apply(first).run.ok
    plan = orch.plan("tests/fixtures/golden/cluster-v2.yaml", name="golden").plan
    text, data = _normalise(plan, tmp_path)
    _check("plan-update.txt", text)
    _check("plan-update.json", data)
    actions = {s.id: s.action for s in plan.steps}
    assert actions["apply compute head[0]"] == "update"  # m1.small -> m1.large
    assert actions["delete compute worker[0]"] == "delete"  # removal_list
    assert actions["delete volume scratch[0]"] == "delete"  # node removed
    assert actions["apply compute login[0]"] == "create"
    assert actions["configure software runtime[1]"] == "configure"  # property changed
    assert actions["apply compute worker[1]"] == "noop"


def test_compute_steps_carry_requirements_and_volume_locations(orch):
    """Providers that mount volumes when a server is made (containers) get the attachment
    locations, and every provider gets the template's requirements."""
    plan = orch.plan("tests/fixtures/valid/tosca13_block_storage.yaml", name="volumes").plan
    server = next(s for s in plan.steps if s.kind == "compute" and s.node == "server")
    assert server.details["volume_locations"] == {"data_volume": "/data",
                                                  "scratch_volume": "/scratch"}
    # TOSCA sizes are decimal: 2 GB = 2e9 bytes = 1908 MiB (rounded up)
    assert server.details["requirements"] == {"cpus": 1, "memory_mib": 1908}

"""A server recreated after it was deleted outside the orchestrator gets its volume back:
its attachment follows the server (and the volume) instead of staying a no-op."""
import pytest

from orchestrator.providers import simulated
from tests import engine_support as es
from tests.integration.test_engine import ATTACHED


@pytest.fixture(autouse=True)
def _fresh_clouds():
    simulated.reset_all()
    yield
    simulated.reset_all()


def test_a_server_recreated_after_outside_deletion_is_attached_again(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, ATTACHED.replace("COUNT", "2"))
    applied = orch.apply(orch.plan(template, name="demo").plan)
    assert applied.run.ok
    rows = {(r.node, r.index, r.kind): r for r in orch.store.resources(applied.deployment.id)}
    victim = rows[("vm", 1, "compute")]
    orch.provider("a").delete(victim.provider_id)  # behind the orchestrator's back
    plan = orch.plan(template, name="demo").plan
    attach = plan.step("apply attachment data[1]")
    assert attach.action == "create" and "attach again" in attach.reason
    assert "apply compute vm[1]" in attach.depends_on
    assert plan.step("apply attachment data[0]").action == "noop"
    assert orch.apply(plan).run.ok
    rows = {(r.node, r.index, r.kind): r for r in orch.store.resources(applied.deployment.id)}
    server = rows[("vm", 1, "compute")].provider_id
    volume = rows[("data", 1, "volume")].provider_id
    assert server != victim.provider_id
    cloud = {r["id"]: r for r in es.alive(orch, "a")}
    assert cloud[server]["attributes"]["volumes"] == {volume: "/dev/vdb"}
    assert cloud[volume]["attributes"]["attached_to"] == server
    assert rows[("data", 1, "attachment")].provider_id == f"{server}/{volume}"
    assert not orch.plan(template, name="demo").plan.has_changes

"""The engine on the simulated cloud: parallelism, retries, failover, rollback,
stale plans, drift, scaling and outputs."""
import pytest

from orchestrator.errors import StalePlanError
from orchestrator.providers import simulated
from tests import engine_support as es


@pytest.fixture(autouse=True)
def _fresh_clouds():
    simulated.reset_all()
    yield
    simulated.reset_all()


def _deploy(orch, template, name="demo", *sets):
    result = orch.plan(template, sets=sets, name=name)
    return orch.apply(result.plan, sets=sets)


def test_independent_steps_overlap_in_time(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a", latency={"boot": 0.5}))
    orch = es.orchestrator(tmp_path, sites)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=4)))
    assert applied.run.ok, applied.run.failed
    timings = applied.run.timings
    creates = [timings[f"apply compute worker[{i}]"] for i in range(4)]
    creates.append(timings["apply compute head[0]"])
    latest_start = max(start for start, _ in creates)
    earliest_end = min(end for _, end in creates)
    assert latest_start < earliest_end, "the five servers were not built concurrently"
    for i in range(4):  # software waits for its own host only
        assert timings[f"configure software app[{i}]"][0] >= timings[
            f"apply compute worker[{i}]"][1]


def test_status_polled_in_batches(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a", latency={"boot": 0.3}))
    orch = es.orchestrator(tmp_path, sites, poll_interval_s=0.1)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=20)))
    assert applied.run.ok
    calls = simulated.api_calls(orch.catalogue.get("a"))
    assert calls["create"] == 21
    assert sum(calls.values()) <= 3 * 21, calls


def test_outputs_resolve_against_state(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=2)))
    outputs = orch.outputs("demo")
    rows = {(r.node, r.index): r for r in orch.store.resources(applied.deployment.id)}
    assert outputs["head_ip"] == rows[("head", 0)].attributes["private_address"]
    assert outputs["worker_ips"] == [rows[("worker", i)].attributes["private_address"]
                                     for i in range(2)]
    assert orch.store.get_deployment("demo").outputs == outputs


def test_transient_errors_are_retried(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a", faults=[
        {"operation": "create", "kind": "transient", "on_call": 1, "times": 2}]))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=1)))
    assert applied.run.ok, applied.run.failed
    assert sum(e["kind"] == "retry" for e in events) == 2
    assert len(es.alive(orch, "a")) == 2  # no duplicate from the retries


def test_failover_to_next_site_keeps_reasons(tmp_path):
    sites = es.write_sites(
        tmp_path, es.site("first", priority=10, boot_error={"node": "worker",
                                                           "message": "No valid host was found"}),
        es.site("second", priority=1))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=1)))
    assert applied.run.ok, applied.run.failed
    rows = {(r.node, r.index): r for r in orch.store.resources(applied.deployment.id)}
    assert rows[("head", 0)].site == "first"
    assert rows[("worker", 0)].site == "second"
    messages = [e["message"] for e in events if e["kind"] in ("attempt-failed", "failover")]
    assert any("No valid host was found" in m for m in messages)
    assert any("failing over from site first to second" in m for m in messages)
    assert [r["tags"]["orchestrator-node"] for r in es.alive(orch, "first")] == ["head"]


def test_failure_rolls_back_what_the_run_created(tmp_path):
    sites = es.write_sites(tmp_path, es.site("only", faults=[
        {"operation": "create", "kind": "permanent", "on_call": 3,
         "message": "flavor disabled"}]))
    orch = es.orchestrator(tmp_path, sites)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=3)))
    assert not applied.run.ok
    assert applied.deployment.status == "failed"
    assert "flavor disabled" in applied.deployment.status_reason
    assert es.alive(orch, "only") == []
    assert orch.store.resources(applied.deployment.id) == []


def test_keep_failed_leaves_resources_in_state(tmp_path):
    sites = es.write_sites(tmp_path, es.site("only", faults=[
        {"operation": "create", "kind": "permanent", "on_call": 2}]))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, es.cluster(workers=1))
    result = orch.plan(template, name="demo")
    applied = orch.apply(result.plan, keep_failed=True)
    assert not applied.run.ok
    kept = es.alive(orch, "only")
    assert len(kept) == 1
    rows = [r for r in orch.store.resources(applied.deployment.id) if r.provider_id]
    assert [r.provider_id for r in rows] == [kept[0]["id"]]


def test_stale_plan_is_refused(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, es.cluster(workers=1))
    _deploy(orch, template)
    old = orch.plan(es.write_template(tmp_path, es.cluster(workers=2)), name="demo").plan
    _deploy(orch, es.write_template(tmp_path, es.cluster(workers=3)))
    with pytest.raises(StalePlanError, match="stale"):
        orch.apply(old)


def test_scale_out_and_in_honours_removal_list(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    _deploy(orch, es.write_template(tmp_path, es.cluster(workers=3)))
    body = es.cluster(workers=2).replace("{count: 2}", "{count: 2, removal_list: ['worker[0]']}")
    plan = orch.plan(es.write_template(tmp_path, body), name="demo").plan
    deletes = [s.id for s in plan.steps if s.action == "delete"]
    assert "delete compute worker[0]" in deletes and "delete compute worker[2]" not in deletes
    applied = orch.apply(plan)
    assert applied.run.ok
    workers = sorted(r.index for r in orch.store.resources(applied.deployment.id)
                     if r.node == "worker" and r.kind == "compute")
    assert workers == [1, 2]
    assert len(es.alive(orch, "a")) == 3


def test_drift_is_planned_and_repaired(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, es.cluster(workers=2))
    applied = _deploy(orch, template)
    victim = next(r for r in orch.store.resources(applied.deployment.id)
                  if (r.node, r.index) == ("worker", 1) and r.kind == "compute")
    orch.provider("a").delete(victim.provider_id)  # behind the orchestrator's back
    plan = orch.plan(template, name="demo").plan
    actions = {s.id: (s.action, s.reason) for s in plan.steps if s.action != "noop"}
    assert actions["apply compute worker[1]"][0] == "create"
    assert "deleted outside the orchestrator" in actions["apply compute worker[1]"][1]
    assert actions["configure software app[1]"][0] == "configure"
    assert orch.apply(plan).run.ok
    assert len(es.alive(orch, "a")) == 3
    assert not orch.plan(template, name="demo").plan.has_changes


def test_delete_leaves_nothing(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=3)))
    assert len(es.alive(orch, "a")) == 4
    run = orch.delete("demo")
    assert run.ok
    assert es.alive(orch, "a") == []
    assert orch.store.get_deployment("demo") is None
    assert orch.store.resources(applied.deployment.id) == []


def test_secret_inputs_must_be_given_again_to_apply(tmp_path):
    from orchestrator.errors import TemplateError

    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, """
topology_template:
  inputs:
    admin_password: {type: string, required: false, description: Admin password}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
""")
    plan = orch.plan(template, sets=["admin_password=s3cr3t"], name="demo").plan
    assert plan.inputs["admin_password"] == "******"
    assert "s3cr3t" not in plan.to_json()
    with pytest.raises(TemplateError, match="secret input.*admin_password"):
        orch.apply(plan)
    assert orch.apply(plan, sets=["admin_password=s3cr3t"]).run.ok
    record = orch.store.get_deployment("demo")
    assert "admin_password" not in record.inputs
    assert all("s3cr3t" not in e.message for e in orch.store.events(record.id))


def test_unavailable_provider_is_named_in_the_placement_error(tmp_path):
    from orchestrator.errors import PlacementError

    sites = es.write_sites(tmp_path, {"name": "os", "provider": "vsphere"}, es.site("sim"))
    orch = es.orchestrator(tmp_path, sites)
    body = es.cluster(workers=1).replace("num_cpus: 2 ,", "num_cpus: 64 ,")
    template = es.write_template(tmp_path, body.replace("{num_cpus: 2}", "{num_cpus: 64}"))
    with pytest.raises(PlacementError) as err:
        orch.plan(template, name="demo")
    assert "site os: unavailable: no provider 'vsphere' is installed" in str(err.value)
    assert "site sim: node head: no flavor with 64 cpus (largest: 16)" in str(err.value)


def test_step_timeout_fails_the_step_and_rolls_back(tmp_path):
    sites = es.write_sites(tmp_path, es.site("slow", latency={"boot": 30}))
    orch = es.orchestrator(tmp_path, sites, step_timeout_s=0.3)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=1)))
    assert not applied.run.ok
    assert any("timed out after 0.3s waiting for" in m for m in applied.run.failed.values())
    assert es.alive(orch, "slow") == []


def test_delete_force_drops_state_when_the_cloud_is_gone(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a", tmp_path))
    orch = es.orchestrator(tmp_path, sites)
    applied = _deploy(orch, es.write_template(tmp_path, es.cluster(workers=1)))
    assert applied.run.ok
    gone = es.write_sites(tmp_path, es.site("a", tmp_path, unreachable=True))
    orch = es.orchestrator(tmp_path, gone, retries=2)
    run = orch.delete("demo")
    assert not run.ok
    record = orch.store.get_deployment("demo")
    assert record.status == "failed" and "delete failed" in record.status_reason
    left = sorted((r.node, r.kind) for r in orch.store.resources(record.id))
    assert left == [("head", "compute"), ("worker", "compute")]  # servers stay in state
    forced = orch.delete("demo", force=True)
    assert not forced.ok
    assert orch.store.get_deployment("demo") is None
    kinds = [e.kind for e in orch.store.events(record.id)]
    assert kinds == []  # the deployment's events went with it


ATTACHED = """
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2}}
        scalable: {properties: {count: COUNT}}
      requirements:
        - local_storage:
            node: data
            relationship: {type: tosca.relationships.AttachesTo,
                           properties: {location: /data, device: /dev/vdb}}
    data:
      type: orchestrator.nodes.BlockStorage
      properties: {size: 10 GiB}
"""


def test_volumes_are_created_attached_and_detached(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    plan = orch.plan(es.write_template(tmp_path, ATTACHED.replace("COUNT", "2")),
                     name="demo").plan
    attach = plan.step("apply attachment data[1]")
    assert set(attach.depends_on) == {"apply compute vm[1]", "apply volume data[1]"}
    assert orch.apply(plan).run.ok
    cloud = {r["id"]: r for r in es.alive(orch, "a")}
    servers = [r for r in cloud.values() if r["kind"] == "compute"]
    assert len(servers) == 2 and len(cloud) == 4
    for server in servers:
        (volume_id, device), = server["attributes"]["volumes"].items()
        assert device == "/dev/vdb"
        assert cloud[volume_id]["attributes"]["attached_to"] == server["id"]
        assert cloud[volume_id]["tags"]["orchestrator-index"] == \
            server["tags"]["orchestrator-index"]
    shrink = orch.plan(es.write_template(tmp_path, ATTACHED.replace("COUNT", "1")),
                       name="demo").plan
    detach = shrink.step("delete attachment data[1]")
    assert detach.depends_on == ()
    assert "delete attachment data[1]" in shrink.step("delete compute vm[1]").depends_on
    assert "delete attachment data[1]" in shrink.step("delete volume data[1]").depends_on
    assert orch.apply(shrink).run.ok
    assert len(es.alive(orch, "a")) == 2
    assert orch.delete("demo").ok
    assert es.alive(orch, "a") == []


def test_resize_behind_our_back_is_planned_and_repaired(tmp_path):
    from orchestrator.providers.base import ResourceSpec

    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, es.cluster(workers=1))
    applied = _deploy(orch, template)
    head = next(r for r in orch.store.resources(applied.deployment.id)
                if (r.node, r.kind) == ("head", "compute"))
    assert head.spec["flavor"] == "m1.small"
    orch.provider("a").update(head.provider_id, ResourceSpec(
        "compute", applied.deployment.id, "head", 0, flavor="m1.large"))
    plan = orch.plan(template, name="demo").plan
    step = plan.step("apply compute head[0]")
    assert step.action == "update" and "resized outside the orchestrator to m1.large" \
        in step.reason
    assert orch.apply(plan).run.ok
    (server,) = [r for r in es.alive(orch, "a") if r["tags"]["orchestrator-node"] == "head"]
    assert server["attributes"]["flavor"] == "m1.small"
    assert not orch.plan(template, name="demo").plan.has_changes


def test_get_attribute_through_a_requirement(tmp_path):
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    body = es.cluster(workers=1) + """
    via_requirement: {value: {get_attribute: [app, host, private_address]}}
"""
    applied = _deploy(orch, es.write_template(tmp_path, body))
    assert applied.run.ok
    outputs = orch.outputs("demo")
    assert outputs["via_requirement"] == outputs["worker_ips"]
    assert outputs["via_requirement"].startswith("10.")


def test_a_plan_without_changes_settles_an_interrupted_deployment(tmp_path):
    """An apply killed after its last step leaves the status 'deploying'; the next plan has
    nothing to do, and settling it marks the deployment deployed (not when another run has
    moved the state on since that plan was made)."""
    sites = es.write_sites(tmp_path, es.site("a"))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, es.cluster(workers=1))
    deployment = _deploy(orch, template).deployment
    orch.store.update_deployment(deployment.id, status="deploying")  # as a killed apply leaves it
    stale = orch.plan(template, name="demo").plan
    orch.store.bump_serial(deployment.id)  # another run since that plan
    orch.settle(stale)
    assert orch.store.get_deployment("demo").status == "deploying"
    fresh = orch.plan(template, name="demo").plan
    assert not fresh.has_changes
    orch.settle(fresh)
    assert orch.store.get_deployment("demo").status == "deployed"


ATTACHED_WITH_PORT = ATTACHED.replace("COUNT", "1") + """
    port:
      type: tosca.nodes.network.Port
      requirements:
        - binding: vm
"""


@pytest.mark.parametrize("fault", [
    {"boot_error": {"node": "vm", "message": "No valid host was found"}},
    {"faults": [{"operation": "create", "kind": "permanent", "node": "vm",
                 "message": "flavor disabled"}]},
], ids=["at-boot", "at-create"])
def test_failover_moves_a_server_with_its_volume_and_port(tmp_path, fault):
    sites = es.write_sites(tmp_path, es.site("dm1", priority=10, **fault),
                           es.site("dm2", priority=1))
    events = []
    orch = es.orchestrator(tmp_path, sites, events)
    applied = _deploy(orch, es.write_template(tmp_path, ATTACHED_WITH_PORT))
    assert applied.run.ok, applied.run.failed
    rows = {(r.node, r.kind): r for r in orch.store.resources(applied.deployment.id)}
    assert {key: row.site for key, row in rows.items()} == {
        ("vm", "compute"): "dm2", ("data", "volume"): "dm2", ("data", "attachment"): "dm2",
        ("port", "port"): "dm2"}
    assert es.alive(orch, "dm1") == []  # nothing left behind on the failed site
    cloud = {r["id"]: r for r in es.alive(orch, "dm2")}
    server, volume = rows[("vm", "compute")].provider_id, rows[("data", "volume")].provider_id
    assert cloud[volume]["attributes"]["attached_to"] == server
    assert cloud[server]["attributes"]["volumes"] == {volume: "/dev/vdb"}
    assert any("failing over from site dm1 to dm2" in e["message"] for e in events)
    assert orch.delete("demo").ok
    assert es.alive(orch, "dm2") == []


def test_failover_is_refused_when_the_volume_holds_data_on_the_failed_site(tmp_path):
    sites = es.write_sites(tmp_path, es.site("dm1", priority=10), es.site("dm2", priority=1))
    orch = es.orchestrator(tmp_path, sites)
    template = es.write_template(tmp_path, ATTACHED.replace("COUNT", "1"))
    applied = _deploy(orch, template)
    assert applied.run.ok
    rows = {r.kind: r for r in orch.store.resources(applied.deployment.id)}
    orch.provider("dm1").delete(rows["compute"].provider_id)  # behind our back
    failing = es.write_sites(tmp_path, es.site("dm1", priority=10, faults=[
        {"operation": "create", "kind": "permanent", "node": "vm", "on_call": 2,
         "message": "no capacity"}]),  # its first create made the deployment
        es.site("dm2", priority=1))
    events = []
    orch = es.orchestrator(tmp_path, failing, events)
    repaired = _deploy(orch, template)
    assert not repaired.run.ok
    reason = repaired.deployment.status_reason
    assert "no capacity" in reason and "volume data[0]" in reason, reason
    assert es.alive(orch, "dm2") == []  # the server did not leave its volume behind
    volumes = [r for r in es.alive(orch, "dm1") if r["kind"] == "volume"]
    assert [v["id"] for v in volumes] == [rows["volume"].provider_id]  # the data is kept

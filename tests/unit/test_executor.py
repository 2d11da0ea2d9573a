"""Executor invariants that need no cloud."""
from orchestrator.engine import ExecutorOptions
from orchestrator.engine.executor import Executor
from orchestrator.plan import Plan, Step


def _plan(*steps):
    return Plan(deployment="d", template="t.yaml", template_digest="x", base_serial=0,
                steps=tuple(steps))


def test_a_dependency_cycle_is_never_reported_as_success():
    plan = _plan(Step("a", "noop", "compute", "a", depends_on=("b",)),
                 Step("b", "noop", "compute", "b", depends_on=("a",)),
                 Step("c", "noop", "compute", "c"))
    result = Executor(None, plan, ExecutorOptions(keep_failed=True)).run()
    assert not result.ok
    assert sorted(result.skipped) == ["a", "b"]
    assert "never finished" in result.failed["plan"]


def test_independent_noop_steps_all_finish():
    plan = _plan(*(Step(f"s{i}", "noop", "compute", f"n{i}") for i in range(20)),
                 Step("last", "noop", "compute", "z", depends_on=tuple(f"s{i}"
                                                                      for i in range(20))))
    result = Executor(None, plan, ExecutorOptions(keep_failed=True)).run()
    assert result.ok and result.skipped == []


def test_host_facts_are_read_from_a_snapshot_while_other_steps_add_rows():
    """A software step looks for a jump host among the compute rows while the threads of
    other steps keep recording theirs: reading the live cache raised 'dictionary changed
    size during iteration' in a 500-node deployment."""
    from types import SimpleNamespace

    from orchestrator.engine.steps import StepContext, _host

    ctx = StepContext(store=None, deployment_id="d", plan=_plan(), topology=None,
                      providers=None, sites={})

    class Row(SimpleNamespace):
        @property
        def attributes(self):  # another thread records a row at this very moment
            ctx._rows[("late", len(ctx._rows), "compute")] = Row(
                node="late", index=0, kind="compute", site="s", provider_id="p", attrs={})
            return self.attrs

    ctx._rows = {("vm", i, "compute"): Row(node="vm", index=i, kind="compute", site="s",
                                           provider_id=f"p{i}",
                                           attrs={"private_address": f"10.0.0.{i}"})
                 for i in range(3)}
    ctx.topology = SimpleNamespace(nodes={"vm": SimpleNamespace(name="vm", compute=object(),
                                                                host=None)})
    host = _host(ctx, "vm", 1)
    assert host["ansible_host"] == "10.0.0.1" and host["jump_host"] is None
    assert [h["address"] for h in host["cluster_hosts"]] == ["10.0.0.0", "10.0.0.1",
                                                              "10.0.0.2"]

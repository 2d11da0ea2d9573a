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

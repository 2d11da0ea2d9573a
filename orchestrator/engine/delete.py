"""Deleting a whole deployment: every resource in state, in reverse dependency order
(software, attachments, then servers, ports, volumes and networks), through the executor."""
from __future__ import annotations

from orchestrator.engine.executor import ExecutorOptions, RunResult, execute
from orchestrator.engine.steps import StepContext
from orchestrator.errors import OrchestratorError
from orchestrator.plan.build import step_id
from orchestrator.plan.model import DELETE, Plan, Step
from orchestrator.topology.model import Topology

ORDER = ("software", "attachment", "compute", "port", "volume", "network")


def delete_plan(record, rows) -> Plan:
    steps: list[Step] = []
    previous: list[str] = []
    for kind in ORDER:
        layer = [r for r in rows if r.kind == kind]
        ids = []
        for row in sorted(layer, key=lambda r: (r.node, r.index)):
            sid = step_id(DELETE, row.kind, row.node, row.index)
            ids.append(sid)
            steps.append(Step(id=sid, action=DELETE, kind=row.kind, node=row.node,
                              index=row.index, site=row.site,
                              details={"provider_id": row.provider_id}, depends_on=tuple(previous),
                              reason="deployment deleted"))
        previous = ids or previous
    return Plan(deployment=record.name, template=record.template_path or "", template_digest="",
                base_serial=record.serial, steps=tuple(steps), deployment_id=record.id)


def delete_all(orchestrator, record) -> RunResult:
    rows = orchestrator.store.resources(record.id)
    plan = delete_plan(record, rows)
    empty = Topology(file=record.template_path or "", version=None, description=None,
                     metadata={}, inputs=(), nodes={}, relationships=(), outputs=(),
                     policies=(), groups=(), order=())
    ctx = StepContext(orchestrator.store, record.id, plan, empty, orchestrator.provider,
                      orchestrator.catalogue.sites, orchestrator.configurator,
                      orchestrator.on_event)
    options = ExecutorOptions(**{**orchestrator.options.__dict__, "keep_failed": True})
    result = execute(ctx, plan, options)
    if result.ok:
        release(ctx, orchestrator.provider, {row.site for row in rows if row.site})
    return result


def release(ctx: StepContext, providers, sites: set[str]) -> None:
    """Ask every site the deployment used to remove what its resources shared."""
    for site in sorted(sites):
        try:
            providers(site).release(ctx.deployment_id)
        except OrchestratorError as exc:
            ctx.event(None, "release-failed", f"site {site}: could not remove the "
                      f"deployment's shared resources: {exc}", level="warning")

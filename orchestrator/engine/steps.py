"""What each plan step does, against the state store and the providers.

The executor (executor.py) decides when a step runs; this module decides what it does.
The engine never knows which provider it drives: it only calls the Provider interface.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator.engine import failover as _failover
from orchestrator.engine.outputs import make_lookup, resolve_outputs, split_outputs
from orchestrator.engine.sealed_attributes import SEALED, open_attributes, seal_attributes
from orchestrator.errors import OrchestratorError, ProviderError
from orchestrator.plan.model import CONFIGURE, CREATE, DELETE, NOOP, REPLACE, UPDATE, Plan, Step
from orchestrator.providers.base import ACTIVE, Provider, Resource, ResourceSpec
from orchestrator.topology.model import Topology
from orchestrator.topology.secrets import MASK


class StepFailed(OrchestratorError):
    """A step failed for good (after retries)."""


@dataclass(frozen=True)
class StepOutcome:
    pending_id: str | None = None  # a resource still building: wait for it
    site: str | None = None


class Configurator:
    """Runs a software node's lifecycle operations on one instance. This base class only
    records them; contextualisation back ends (Ansible) subclass it."""

    def configure(self, step: Step, topology: Topology, host: dict | None,
                  site_options: dict) -> dict:
        delay = float((site_options.get("latency") or {}).get("configure", 0) or 0)
        if delay:
            threading.Event().wait(delay)
        node = topology.nodes.get(step.node)
        ops = [f"{o.interface}.{o.name}" for o in node.operations if o.implementation] \
            if node else []
        return {"state": "started", "operations": ops}

    def unconfigure(self, step: Step, topology: Topology | None, site_options: dict,
                    host_for: Callable[[str], dict | None] | None = None) -> None:
        """Undo a software instance being removed (Standard.stop, Standard.delete).
        ``host_for(compute_node)`` gives the connection facts of its host, or None when
        the host is gone or going too."""
        return None

    def estimate(self, site_options: dict) -> float:
        """Typical seconds one configure step takes, for the plan's duration estimate."""
        return float((site_options.get("latency") or {}).get("configure", 0) or 0)


@dataclass
class StepContext:
    """Everything steps need: state, providers, placement failover, events."""

    store: Any
    deployment_id: str
    plan: Plan
    topology: Topology
    providers: Callable[[str | None], Provider]  # site name -> provider
    sites: dict  # name -> Site
    configurator: Configurator = field(default_factory=Configurator)
    on_event: Callable[[dict], None] | None = None
    created: list = field(default_factory=list)  # (node, index, kind) made by this run
    tried: dict = field(default_factory=dict)  # step id -> sites tried
    moved: dict = field(default_factory=dict)  # (server, index) -> the site it failed over to
    wait_timeout_s: float = 1800.0  # a volume made again beside its failed-over server
    ssh_public_key: str | None = None  # the deployment's key, injected into servers
    workdir: str | None = None  # the deployment's data folder (keys, logs, Ansible runs)
    #: seals the outputs computed from secrets (a dict -> its sealed text); without one
    #: they are kept masked only
    seal: Callable[[dict], str] | None = None
    #: opens what ``seal`` sealed: the secret attributes a resumed run needs again
    open_sealed: Callable[[str], dict] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rows: dict | None = None
    _together: dict | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def concurrency(self, site: str | None) -> int:
        found = self.sites.get(site)
        return max(1, int(getattr(found, "concurrency", 10) or 10))

    def poll(self, site: str | None, ids: list[str]) -> dict[str, Resource]:
        return self.providers(site).poll(ids)

    def event(self, step: Step | None, kind: str, message: str, level: str = "info",
              data: dict | None = None) -> None:
        record = self.store.add_event(self.deployment_id, kind, message,
                                      step=step.id if step else None, level=level, data=data)
        if self.on_event:
            self.on_event(record.to_dict() if hasattr(record, "to_dict") else dict(record))

    def _cache(self) -> dict:
        with self._lock:
            if self._rows is None:
                self._rows = {(r.node, r.index, r.kind): self._opened(r)
                              for r in self.store.resources(self.deployment_id)}
            return self._rows

    def record(self, step: Step, **fields):
        """Store the step's row (secret attributes sealed) and keep it, opened, for the
        run's own lookups."""
        if fields.get("attributes"):
            fields["attributes"] = seal_attributes(fields["attributes"], self.seal, MASK)
        row = self.store.upsert_resource(self.deployment_id, step.node, step.index, step.kind,
                                         **fields)
        row = self._opened(row)
        self._cache()[(step.node, step.index, step.kind)] = row
        return row

    def _opened(self, row):
        attributes = getattr(row, "attributes", None)
        if not isinstance(attributes, dict) or SEALED not in attributes:
            return row
        return dataclasses.replace(row, attributes=open_attributes(attributes,
                                                                   self.open_sealed))

    def forget(self, node: str, index: int, kind: str) -> None:
        self.store.delete_resource(self.deployment_id, node, index, kind)
        self._cache().pop((node, index, kind), None)

    def current(self, step: Step):
        """This step's resource row (the run keeps a write-through cache of the rows)."""
        return self._cache().get((step.node, step.index, step.kind))

    def current_key(self, key: tuple[str, int, str]):
        return self._cache().get(key)

    def rows(self) -> list:
        return list(self._cache().values())

    def configured_together(self, node: str) -> list[int]:
        """Indexes of ``node`` that this plan configures."""
        with self._lock:
            if self._together is None:
                together: dict[str, list[int]] = {}
                for s in self.plan.steps:
                    if s.kind == "software" and s.action == CONFIGURE:
                        together.setdefault(s.node, []).append(s.index)
                self._together = together
            return list(self._together.get(node, ()))

    def spec(self, step: Step, site: str | None = None, details: dict | None = None
             ) -> ResourceSpec:
        details = details if details is not None else step.details
        props = {k: v for k, v in details.items() if k not in ("site", "flavor", "image")}
        if step.kind == "compute" and self.ssh_public_key:
            props["ssh_public_key"] = self.ssh_public_key  # not in the plan: not a change
        return ResourceSpec(kind=step.kind, deployment=self.deployment_id, node=step.node,
                            index=step.index, flavor=details.get("flavor"),
                            image=details.get("image"), properties=props)

    def activated(self, step: Step, resource: Resource) -> None:
        self.record(step, status=ACTIVE, provider_id=resource.provider_id,
                    attributes=dict(resource.attributes))
        self.event(step, "resource-active", f"{step.instance} ({step.kind}) is active",
                   data={"provider_id": resource.provider_id})

    # -- creation ------------------------------------------------------------------------------
    def create(self, step: Step, site: str | None, details: dict) -> StepOutcome:
        before = self.current(step)
        if before is not None and before.status == ACTIVE and before.provider_id and \
                before.spec == details:
            return StepOutcome()  # finished by an earlier, interrupted run
        with self._lock:
            if before is None or before.status != ACTIVE:
                self.created.append((step.node, step.index, step.kind))
        # intent first: a crash after the cloud call is recovered through the tags
        self.record(step, site=site, status="creating", spec=details)
        self.event(step, "creating", f"creating {step.kind} {step.instance} on site {site}"
                   + (f" (flavor {details['flavor']})" if details.get("flavor") else ""))
        resource = self.providers(site).create(self.spec(step, site, details))
        self.record(step, provider_id=resource.provider_id, status=resource.status,
                    attributes=dict(resource.attributes))
        if resource.status == ACTIVE:
            self.activated(step, resource)
            return StepOutcome()
        return StepOutcome(pending_id=resource.provider_id, site=site)

    def failover(self, step: Step, message: str) -> StepOutcome | None:
        """Move a failed compute instance, with what is attached to it, to the next ranked
        site, if there is one (engine/failover.py)."""
        return _failover.fail_over(self, step, message)

    def _discard(self, step: Step) -> None:
        _failover.discard(self, step)

    # -- rollback ------------------------------------------------------------------------------
    def rollback(self) -> list[str]:
        """Delete, newest first, what this run created."""
        undone = []
        rows = dict(self._cache())
        for key in dict.fromkeys(reversed(self.created)):  # made again: undone once
            row = rows.get(key)
            if row is None:
                continue
            name = f"{key[0]}[{key[1]}]"
            try:
                if row.provider_id:
                    _remove(self, row.site, row.kind, row.provider_id)
                self.forget(*key)
                undone.append(name)
                self.event(None, "rolled-back", f"rolled back {row.kind} {name}")
            except ProviderError as exc:
                self.event(None, "rollback-failed", f"could not roll back {name}: {exc}",
                           level="error")
        return undone


def _remove(ctx: StepContext, site: str | None, kind: str, provider_id: str) -> None:
    """Delete a cloud resource, or detach an attachment."""
    if kind == "attachment":
        ctx.providers(site).detach(provider_id)
    elif kind != "software":
        ctx.providers(site).delete(provider_id)


def _attach(ctx: StepContext, step: Step) -> StepOutcome:
    rows = ctx._cache()
    server = rows.get((step.details["server"], step.index, "compute"))
    volume = rows.get((step.details["volume"], step.index, "volume")) or \
        rows.get((step.details["volume"], 0, "volume"))
    if server is None or volume is None or not server.provider_id or not volume.provider_id:
        raise StepFailed(f"cannot attach {step.details['volume']} to "
                         f"{step.details['server']}[{step.index}]: not created")
    volume = _failover.colocate(ctx, server, volume, ctx.wait_timeout_s)
    with ctx._lock:
        ctx.created.append((step.node, step.index, step.kind))
    ctx.record(step, site=server.site, status="creating", spec=step.details)
    resource = ctx.providers(server.site).attach(server.provider_id, volume.provider_id,
                                                 step.details.get("device"))
    ctx.record(step, provider_id=resource.provider_id, status=ACTIVE,
               attributes=dict(resource.attributes))
    ctx.event(step, "attached", f"attached volume {volume.node}[{volume.index}] to "
              f"{server.node}[{server.index}]"
              + (f" at {step.details['device']}" if step.details.get("device") else ""))
    return StepOutcome()


def run_step(ctx: StepContext, step: Step) -> StepOutcome:
    if step.kind == "outputs":
        shown, secret = split_outputs(resolve_outputs(ctx.topology, ctx.rows()), MASK)
        sealed = ctx.seal(secret) if secret and ctx.seal is not None else None
        ctx.store.update_deployment(ctx.deployment_id, outputs=shown, sealed_outputs=sealed)
        return StepOutcome()
    if step.action == NOOP:
        return StepOutcome()
    if step.kind == "software":
        return _software(ctx, step)
    if step.kind == "attachment" and step.action in (CREATE, REPLACE, UPDATE):
        if step.action != CREATE:
            _delete(ctx, step)
        return _attach(ctx, step)
    if step.action == CREATE:
        site = _failover.site_for(ctx, step)
        return ctx.create(step, site, step.details if site == step.site
                          else {**step.details, "site": site})
    if step.action == REPLACE:
        ctx.event(step, "replacing", f"replacing {step.instance}: {step.reason}")
        ctx._discard(step)
        return ctx.create(step, step.site, step.details)
    if step.action == UPDATE:
        row = ctx.current(step)
        if row is None or not row.provider_id:
            return ctx.create(step, step.site, step.details)
        ctx.event(step, "updating", f"updating {step.instance}: {step.reason}")
        resource = ctx.providers(row.site).update(row.provider_id, ctx.spec(step))
        ctx.record(step, status=resource.status, spec=step.details,
                   attributes=dict(resource.attributes))
        if resource.status == ACTIVE:
            ctx.activated(step, resource)
            return StepOutcome()
        return StepOutcome(pending_id=resource.provider_id, site=row.site)
    if step.action == DELETE:
        return _delete(ctx, step)
    raise StepFailed(f"unknown action {step.action!r} in step {step.id}")


def _delete(ctx: StepContext, step: Step) -> StepOutcome:
    row = ctx.current(step)
    if row is None:
        return StepOutcome()
    ctx.record(step, status="deleting")
    ctx.event(step, "deleting", f"deleting {step.kind} {step.instance}: {step.reason}")
    if row.provider_id:
        _remove(ctx, row.site, row.kind, row.provider_id)
    ctx.forget(step.node, step.index, step.kind)
    ctx.event(step, "deleted", f"deleted {step.kind} {step.instance}")
    return StepOutcome()


#: relationship operations run before / after the source node's own configure
RELATIONSHIP_PHASES = {"pre": ("pre_configure_source", "pre_configure_target"),
                       "post": ("post_configure_source", "post_configure_target", "add_target",
                                "add_source")}


def _relationships(ctx: StepContext, step: Step, host: dict | None, phase: str) -> None:
    """Run the relationship operations of ``phase`` for the node's outgoing relationships
    (the configurator decides on which side each runs)."""
    run = getattr(ctx.configurator, "run_relationship", None)
    if run is None or host is None:
        return
    for rel in ctx.topology.relationships:
        if rel.source != step.node:
            continue
        for op in rel.operations:
            if not op.implementation or op.name not in RELATIONSHIP_PHASES[phase]:
                continue
            target = _host(ctx, rel.target, step.index) or _host(ctx, rel.target, 0)
            if target is None:
                raise StepFailed(f"{step.instance}: relationship {rel.requirement} to "
                                 f"{rel.target} has no server to run {op.name} on")
            ctx.event(step, "relationship", f"{step.instance} -> {rel.target}: "
                      f"{op.interface.rsplit('.', 1)[-1]}.{op.name}")
            run(rel, op, host, target, ctx.topology, host.get("lookup"))


def _host(ctx: StepContext, node_name: str, index: int) -> dict | None:
    """Connection facts of the server a software instance runs on: the attributes its
    provider reported (address, ssh port and user...), plus the deployment's key."""
    node = ctx.topology.nodes.get(node_name)
    seen: set[str] = set()
    while node is not None and node.compute is None and node.host and node.name not in seen:
        seen.add(node.name)
        node = ctx.topology.nodes.get(node.host)
    if node is None or node.compute is None:
        return None
    rows = dict(ctx._cache())  # a copy: other steps' threads add rows while this one reads
    row = rows.get((node.name, index, "compute"))
    if row is None:
        return None
    attributes = dict(row.attributes or {})
    reachable = attributes.get("ssh_host") or attributes.get("public_address")
    jump = None
    if not reachable:  # a private-only server: through a server of the deployment that
        for other in rows.values():  # can be reached (the IM's users ask for exactly this)
            facts = other.attributes or {}
            if other.kind == "compute" and (facts.get("ssh_host") or facts.get("public_address")):
                jump = {"host": facts.get("ssh_host") or facts.get("public_address"),
                        "port": facts.get("ssh_port") or 22,
                        "user": facts.get("ssh_user") or "root"}
                break
    return {
        "node": node.name, "index": index, "provider_id": row.provider_id,
        "site": row.site,
        "ansible_host": reachable or (None if jump else attributes.get("private_address")),
        "jump_host": jump,
        "ansible_port": attributes.get("ssh_port") or 22,
        "ansible_user": attributes.get("ssh_user") or "root",
        "ansible_ssh_private_key_file": f"{ctx.workdir}/ssh/id_ed25519" if ctx.workdir
        else None,
        "private_address": attributes.get("private_address"),
        "ssh_options": attributes.get("ssh_options") or {},
        "cluster_hosts": [{"name": f"{r.node}-{r.index}",
                           "address": (r.attributes or {}).get("private_address")}
                          for (n, i, kind), r in sorted(rows.items())
                          if kind == "compute" and (r.attributes or {}).get("private_address")],
        "vars": {"endpoints": attributes.get("endpoints") or {}},
        "lookup": make_lookup(list(rows.values()), ctx.topology),
    }


def _software(ctx: StepContext, step: Step) -> StepOutcome:
    site_options = getattr(ctx.sites.get(step.site), "options", {}) or {}
    if step.action == DELETE:
        ctx.event(step, "deleting", f"removing software {step.instance}: {step.reason}")
        ctx.configurator.unconfigure(step, ctx.topology, site_options,
                                     host_for=lambda compute: _host(ctx, compute, step.index))
        ctx.forget(step.node, step.index, step.kind)
        return StepOutcome()
    if step.action != CONFIGURE:
        return StepOutcome()
    with ctx._lock:
        ctx.created.append((step.node, step.index, step.kind))
    ctx.record(step, site=step.site, status="configuring", spec=step.details)
    ctx.event(step, "configuring", f"configuring {step.instance}")
    host = _host(ctx, step.node, step.index)
    if host is not None:  # the instances configured alongside: one Ansible run may serve all
        host["batch"] = {"group": f"{ctx.deployment_id}/{ctx.plan.base_serial}/{step.node}",
                         "indexes": ctx.configured_together(step.node)}
    _relationships(ctx, step, host, "pre")
    attributes = ctx.configurator.configure(step, ctx.topology, host, site_options)
    _relationships(ctx, step, host, "post")
    ctx.record(step, status="configured", attributes=attributes)
    ctx.event(step, "configured", f"{step.instance} configured")
    return StepOutcome()

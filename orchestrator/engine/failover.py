"""Failover: a server that fails for good on one site moves to the next ranked site, and
what is attached to it goes with it.

A server's companions are the volumes attached to it (``AttachesTo``) and the ports bound
to it (``BindsTo``), instance by instance; its floating IPs belong to the server itself and
go with it (a provider deletes them with the server and makes them anew for the new one).

* A companion not made yet is made on the server's new site (``site_for``).
* A companion this run already made on the old site is deleted there and made again on the
  new site when its attachment runs (``colocate``): it holds nothing yet.
* A volume that existed before this run holds data that cannot move, and a volume shared
  with other servers cannot follow one of them: the server does not fail over, the step
  fails with that reason, and the run rolls back what it made (never that volume)."""
from __future__ import annotations

import time

from orchestrator.errors import OrchestratorError, ProviderError
from orchestrator.plan.model import CREATE, REPLACE, Step
from orchestrator.providers.base import ACTIVE, ERROR

WAIT_POLL_S = 0.2


class CannotMove(OrchestratorError):
    """A companion of a failing server cannot follow it to another site."""


def fail_over(ctx, step: Step, message: str):
    """Move a failed compute instance (and its companions) to the next ranked site; the
    creation's StepOutcome, or None when there is nowhere (or nothing may) move."""
    ctx.event(step, "attempt-failed", f"{step.instance} on site {step.site}: {message}",
              level="warning")
    if step.kind != "compute" or step.action not in (CREATE, REPLACE):
        return None
    placement = ctx.plan.placement.get("nodes", {}).get(step.node) or {}
    tried = ctx.tried.setdefault(step.id, [step.site])
    choices = [c for c in placement.get("failover", []) if c["site"] not in tried]
    if not choices:
        return None
    try:
        movable(ctx, step)
    except CannotMove as exc:
        ctx.event(step, "failover-refused", f"{step.instance} stays on site {step.site}: "
                  f"{exc}", level="error")
        raise CannotMove(f"{message}; it cannot fail over: {exc}") from None
    for choice in choices:
        tried.append(choice["site"])
        discard(ctx, step)
        with ctx._lock:
            ctx.moved[(step.node, step.index)] = choice["site"]
        details = {**step.details, "site": choice["site"], "flavor": choice["flavor"],
                   "image": choice["image"]}
        ctx.event(step, "failover", f"{step.instance}: failing over from site "
                  f"{tried[-2]} to {choice['site']} ({message})"
                  + _with(companions(ctx, step)), level="warning")
        try:
            return ctx.create(step, choice["site"], details)
        except ProviderError as exc:
            ctx.event(step, "attempt-failed", f"{step.instance} on site "
                      f"{choice['site']}: {exc}", level="warning")
    return None


def _with(keys) -> str:
    names = [f"{kind} {node}[{index}]" for node, index, kind in keys]
    return f", with {', '.join(names)}" if names else ""


def companions(ctx, step: Step) -> list[tuple[str, int, str]]:
    """(node, index, kind) of the volumes attached to and the ports bound to this server
    instance, as this plan wants them."""
    found: dict[tuple[str, int, str], None] = {}
    keys = {(s.node, s.index, s.kind) for s in ctx.plan.steps}
    for other in ctx.plan.steps:
        if other.kind == "attachment" and other.index == step.index and \
                other.details.get("server") == step.node:
            found[volume_key(keys, other.details["volume"], other.index)] = None
    bound = {rel.source for rel in ctx.topology.relationships
             if rel.kind == "BindsTo" and rel.target == step.node}
    for other in ctx.plan.steps:
        if other.kind == "port" and other.node in bound and other.index == step.index:
            found[(other.node, other.index, "port")] = None
    return list(found)


def volume_key(keys, volume: str, index: int) -> tuple[str, int, str]:
    """The volume an attachment of instance ``index`` uses: its own, or the one shared."""
    return (volume, index, "volume") if (volume, index, "volume") in keys else \
        (volume, 0, "volume")


def movable(ctx, step: Step) -> None:
    """CannotMove when a volume of this server instance cannot follow it."""
    keys = {(s.node, s.index, s.kind) for s in ctx.plan.steps}
    for key in companions(ctx, step):
        if key[2] != "volume":
            continue
        name = f"volume {key[0]}[{key[1]}]"
        sharing = sorted(f"{s.details['server']}[{s.index}]" for s in ctx.plan.steps
                         if s.kind == "attachment" and s.details.get("volume") == key[0]
                         and volume_key(keys, key[0], s.index) == key
                         and (s.details.get("server"), s.index) != (step.node, step.index))
        if sharing:
            raise CannotMove(f"{name} is attached to {', '.join(sharing)} too")
        row = ctx.current_key(key)
        with ctx._lock:
            made_here = key in ctx.created
        if row is not None and row.provider_id and not made_here:
            raise CannotMove(f"{name} holds data on site {row.site} (it existed before this "
                             "run), and data does not move between sites")


def site_for(ctx, step: Step) -> str | None:
    """Where a volume or port is made: beside the server it follows, which may have failed
    over since the plan was made."""
    if step.kind not in ("volume", "port"):
        return step.site
    with ctx._lock:
        moved = dict(ctx.moved)
    if not moved:
        return step.site
    for server, index in moved:
        if index == step.index and (step.node, step.index, step.kind) in companions(
                ctx, _compute_step(server, index)):
            return moved[(server, index)]
    return step.site


def _compute_step(node: str, index: int) -> Step:
    return Step(id="", action=CREATE, kind="compute", node=node, index=index, site=None,
                details={}, depends_on=(), reason="")


def colocate(ctx, server_row, volume_row, timeout_s: float):
    """The volume's row, on the server's site: a volume this run made on the site its
    server failed over from is deleted there and made again beside the server."""
    if volume_row.site == server_row.site:
        return volume_row
    key = (volume_row.node, volume_row.index, "volume")
    name = f"volume {key[0]}[{key[1]}]"
    with ctx._lock:
        made_here = key in ctx.created
    if not made_here:
        raise CannotMove(f"{name} is on site {volume_row.site} and its server "
                         f"{server_row.node}[{server_row.index}] on {server_row.site}: "
                         "data does not move between sites")
    step = next(s for s in ctx.plan.steps if (s.node, s.index, s.kind) == key)
    try:
        if volume_row.provider_id:
            ctx.providers(volume_row.site).delete(volume_row.provider_id)
    except ProviderError as exc:
        raise CannotMove(f"{name} cannot follow its server: deleting it on site "
                         f"{volume_row.site} failed: {exc}") from exc
    ctx.forget(*key)
    ctx.event(step, "failover", f"{name} follows its server from site {volume_row.site} to "
              f"{server_row.site}", level="warning")
    outcome = ctx.create(step, server_row.site, {**step.details, "site": server_row.site})
    if outcome.pending_id is not None:
        _wait_active(ctx, step, server_row.site, outcome.pending_id, timeout_s)
    return ctx.current_key(key)


def _wait_active(ctx, step: Step, site: str, provider_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        resource = ctx.poll(site, [provider_id]).get(provider_id)
        if resource is not None and resource.status == ACTIVE:
            ctx.activated(step, resource)
            return
        if resource is not None and resource.status == ERROR:
            raise CannotMove(f"{step.instance} went to ERROR on site {site}: "
                             f"{resource.fault or 'no reason'}")
        if time.monotonic() > deadline:
            raise CannotMove(f"timed out after {timeout_s:g}s waiting for {step.instance} "
                             f"on site {site}")
        time.sleep(WAIT_POLL_S)


def discard(ctx, step: Step) -> None:
    """Delete the step's resource and forget it (kept in state when the delete fails)."""
    row = ctx.current(step)
    if row is not None and row.provider_id:
        try:
            ctx.providers(row.site).delete(row.provider_id)
        except ProviderError as exc:
            ctx.event(step, "cleanup-failed", f"could not delete {row.provider_id}: {exc}",
                      level="error")
            return
    if row is not None:
        ctx.forget(step.node, step.index, step.kind)

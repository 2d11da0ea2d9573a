"""Progress of a deployment: its events (JSON, or a server-sent-events stream) and its
resources, with start/stop actions where the site's provider can do them."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from orchestrator import service
from orchestrator.api.deps import ServiceContext, context, principal, visible_deployment
from orchestrator.api.problems import Problem
from orchestrator.api.routes import views

router = APIRouter(prefix="/v1/deployments", tags=["progress"])
STREAM_POLL_S = 0.5


def _event(record) -> dict:
    return service.masked(record.to_dict())


@router.get("/{deployment_id}/events",
            summary="The event log; with 'Accept: text/event-stream', a live SSE stream",
            responses={200: {"content": {"application/json": {},
                                         "text/event-stream": {}}}})
async def events(deployment_id: str, request: Request,
                 since: int = Query(0, ge=0, le=2**62), limit: int = Query(1000, ge=1, le=10000),
                 ctx: ServiceContext = Depends(context), who=Depends(principal)):
    record = await run_in_threadpool(visible_deployment, ctx, who, deployment_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else since
        return StreamingResponse(_stream(ctx, record.id, start, request),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    found = await run_in_threadpool(ctx.store.events, record.id, since, limit)
    return [_event(e) for e in found]


async def _stream(ctx: ServiceContext, deployment_id: str, since: int, request: Request):
    """Events as they are written; ends when the deployment is idle (nothing queued or
    running) or gone, with a final 'end' event."""
    while not await request.is_disconnected():
        found = await run_in_threadpool(ctx.store.events, deployment_id, since, 500)
        for event in found:
            since = event.id
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(_event(event))}\n\n"
        if found:
            continue
        record = await run_in_threadpool(ctx.store.get_deployment, deployment_id)
        pending = await run_in_threadpool(ctx.store.pending_work, deployment_id)
        if record is None or (pending == 0 and record.status in views.TERMINAL):
            status = record.status if record else "deleted"
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        yield ": keep-alive\n\n"
        await asyncio.sleep(STREAM_POLL_S)


@router.get("/{deployment_id}/resources")
def resources(deployment_id: str, ctx: ServiceContext = Depends(context),
              who=Depends(principal)) -> list[dict]:
    record = visible_deployment(ctx, who, deployment_id)
    return [views.resource(r) for r in ctx.store.resources(record.id)]


@router.post("/{deployment_id}/resources/{resource_id}/{action}",
             summary="Start or stop a server (where the site's provider can)",
             responses={501: {"description": "the site's provider cannot do this"}})
def resource_action(deployment_id: str, resource_id: str, action: str,
                    ctx: ServiceContext = Depends(context), who=Depends(principal)) -> dict:
    if action not in ("start", "stop"):
        raise Problem(404, "not-found", "Not found", f"no resource action {action!r}; "
                      "use start or stop")
    record = visible_deployment(ctx, who, deployment_id)
    found = [r for r in ctx.store.resources(record.id) if r.id == resource_id]
    if not found:
        raise Problem(404, "not-found", "Not found", f"no resource with id {resource_id!r}")
    row = found[0]
    if row.kind != "compute" or not row.provider_id:
        raise Problem(409, "not-startable", "Cannot do that",
                      f"{row.node}[{row.index}] is a {row.kind} without a running server")
    orch = service.orchestrator_for_work(ctx.store, ctx.settings.sites, record.owner)
    try:
        result = service.provider_action(orch, row.site, action, row.provider_id)
    except NotImplementedError as exc:
        raise Problem(501, "not-implemented", "Not supported by this site", str(exc)) from exc
    finally:
        service.release_orchestrator(orch)
    ctx.store.add_event(record.id, f"resource-{action}", f"{row.node}[{row.index}] {action}")
    return {"resource": resource_id, "action": action,
            "status": getattr(result, "status", None)}

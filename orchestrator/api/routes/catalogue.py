"""Routes about the service itself: /health, /version, /v1/me, the template catalogue and
the sites (without their credentials or options)."""
from __future__ import annotations

import threading

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from orchestrator import __version__, service
from orchestrator.api.deps import ServiceContext, context, principal
from orchestrator.api.problems import not_found

router = APIRouter()
_catalogue_lock = threading.Lock()
SITE_FIELDS = ("name", "provider", "priority", "weight", "concurrency", "sla_ids", "quotas",
               "flavors", "images")


@router.get("/health", tags=["service"], summary="Liveness and database reachability")
async def health(ctx: ServiceContext = Depends(context)) -> dict:
    await run_in_threadpool(ctx.store.list_deployments, status="__none__")
    return {"status": "ok"}


@router.get("/version", tags=["service"])
async def version() -> dict:
    return {"version": __version__, "api": "v1"}


@router.get("/v1/me", tags=["service"], summary="Who the bearer token says you are")
def me(who=Depends(principal)) -> dict:
    return who.to_dict()


def _catalogue(ctx: ServiceContext) -> list[dict]:
    with _catalogue_lock:  # validating the catalogue takes a while: once per process
        if "templates" not in ctx.cache:
            ctx.cache["templates"] = [
                {"name": e.name, "description": e.description, "metadata": e.metadata,
                 "inputs": service.masked(list(e.inputs)), "valid": e.valid}
                for e in service.catalogue()]
        return ctx.cache["templates"]


@router.get("/v1/templates", tags=["catalogue"],
            summary="The template catalogue with descriptions and input metadata")
def templates(ctx: ServiceContext = Depends(context), who=Depends(principal)) -> list[dict]:
    return _catalogue(ctx)


@router.get("/v1/templates/{name}", tags=["catalogue"])
def template(name: str, ctx: ServiceContext = Depends(context),
             who=Depends(principal)) -> dict:
    for entry in _catalogue(ctx):
        if entry["name"] == name:
            return entry
    raise not_found(f"no catalogue template named {name!r}")


@router.get("/v1/sites", tags=["catalogue"], summary="The sites deployments may go to")
def sites(ctx: ServiceContext = Depends(context), who=Depends(principal)) -> dict:
    if "sites" not in ctx.cache:
        orch = service.orchestrator(sites=ctx.settings.sites)
        data = service.sites_data(orch)
        ctx.cache["sites"] = {"sites": [{k: s.get(k) for k in SITE_FIELDS if k in s}
                                        for s in data["sites"]]}
    return ctx.cache["sites"]

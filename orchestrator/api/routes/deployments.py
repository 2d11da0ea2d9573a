"""/v1/deployments: submit, list, read, update and delete deployments. Writes are queued
for the workers (202 + Location); reads come from the state store."""
from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from orchestrator import service
from orchestrator.api import callbacks
from orchestrator.api.deps import (
    ServiceContext,
    context,
    principal,
    require_group,
    visible_deployment,
    visible_summary,
)
from orchestrator.api.problems import Problem, forbidden
from orchestrator.api.routes import views
from orchestrator.errors import TemplateError

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class DeploymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME, description="default: the template's name")
    template: str | None = Field(None, max_length=20 * 1024 * 1024,
                                 description="TOSCA YAML text")
    template_name: str | None = Field(None, pattern=NAME,
                                      description="a catalogue template instead of text")
    inputs: dict = Field(default_factory=dict)
    sites: list[str] = Field(default_factory=list, description="only these sites")
    group: str | None = Field(None, max_length=255, description="share with this group")
    callback_url: str | None = Field(None, pattern=r"^https?://", max_length=2048)
    keep_failed: bool = False


class UpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str | None = Field(None, max_length=20 * 1024 * 1024)
    template_name: str | None = Field(None, pattern=NAME)
    inputs: dict = Field(default_factory=dict)
    sites: list[str] = Field(default_factory=list)
    callback_url: str | None = Field(None, pattern=r"^https?://", max_length=2048)
    keep_failed: bool = False


class InputsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict = Field(default_factory=dict, description="merged over the stored inputs")
    callback_url: str | None = Field(None, pattern=r"^https?://", max_length=2048)


def _source(template: str | None, template_name: str | None) -> dict:
    if (template is None) == (template_name is None):
        raise Problem(422, "invalid-request", "The request is invalid",
                      "give exactly one of 'template' (YAML text) and 'template_name'")
    if template_name is not None:
        if service.catalogue_template(template_name) is None:
            raise Problem(422, "unknown-template", "No such catalogue template",
                          f"no catalogue template named {template_name!r}")
        return {"catalogue": template_name}
    return {"text": template}


def _validated(ctx: ServiceContext, source: dict, inputs: dict, workdir):
    """Validate the template with its inputs (in this worker thread, not the event loop);
    TemplateError with the diagnostics when invalid."""
    path = views.template_file(source, workdir)
    report = service.validate_inputs(path, inputs, ctx.settings.import_hosts)
    if not report.valid:
        raise TemplateError("the template is invalid", report.diagnostics)
    service.require_inputs(report)  # every required input has a value
    return path, report


def _callback(ctx: ServiceContext, url: str | None) -> str | None:
    """The callback URL if the service may POST to it (``api.callbacks``); 422 otherwise,
    before anything is stored."""
    why = None if url is None else callbacks.refusal(url, ctx.settings.callback_hosts)
    if why is not None:
        raise Problem(422, "callback-refused", "The callback URL is refused",
                      f"callback_url: {why}")
    return url


def _enqueue(ctx, record, operation: str, payload: dict, secret: dict, callback: str | None):
    sealed = ctx.sealer.seal(secret) if secret else None
    work = ctx.store.enqueue_work(record.id, operation, payload, sealed=sealed,
                                  callback_url=callback)
    ctx.store.add_event(record.id, "queued", f"{operation} queued", data={"work": work.id})
    return work


def _accepted(response: Response, record, work) -> dict:
    response.status_code = 202
    response.headers["Location"] = f"/v1/deployments/{record.id}"
    return views.deployment(record) | {"work": views.work(work)}


@router.post("", status_code=202, summary="Submit a deployment (runs in the background)")
def create(body: DeploymentRequest, response: Response, ctx: ServiceContext = Depends(context),
           who=Depends(principal)) -> dict:
    require_group(who, body.group)
    callback = _callback(ctx, body.callback_url)
    source = _source(body.template, body.template_name)
    name = body.name or body.template_name or "deployment"
    with views.scratch_dir() as scratch:
        path, report = _validated(ctx, source, body.inputs, scratch)
        public, secret = service.split_secret_inputs(report, body.inputs)
        text = open(path, encoding="utf-8", errors="replace").read()
    try:
        record = ctx.store.create_deployment(name, owner=who.owner, group=body.group,
                                             template_text=text, inputs=public,
                                             sites=ctx.settings.sites)
    except ValueError as exc:
        raise Problem(409, "name-taken", "The name is taken", str(exc)) from exc
    payload = {"template": source, "inputs": public, "sites": body.sites,
               "keep_failed": body.keep_failed}
    work = _enqueue(ctx, record, "deploy", payload, secret, callback)
    return _accepted(response, record, work)


@router.get("", summary="The deployments you may see (yours, your groups'; all for admins)")
def list_(owner: str | None = Query(None, max_length=255),
          group: str | None = Query(None, max_length=255),
          status: str | None = Query(None, max_length=32),
          ctx: ServiceContext = Depends(context), who=Depends(principal)) -> list[dict]:
    records = ctx.store.list_deployments(owner=owner, group=group, status=status)
    return [views.deployment(r) for r in records if who.can_see(r.owner, r.group)]


@router.get("/{deployment_id}", summary="One deployment; pending_work counts its queued and "
            "running operations")
async def get(deployment_id: str, ctx: ServiceContext = Depends(context),
              who=Depends(principal)) -> dict:
    # The hottest route (clients poll it): one indexed query for the status columns. On an
    # SQLite file the event loop runs it itself (a thread hop would cost more than the read
    # and make the loop compete for the interpreter lock); PostgreSQL reads go to a thread.
    if ctx.store.reads_never_wait:
        summary = visible_summary(ctx, who, deployment_id)
    else:
        summary = await run_in_threadpool(visible_summary, ctx, who, deployment_id)
    return views.summary_response(summary)


def _earlier_secrets(ctx, record, inputs: dict) -> dict:
    """The secret inputs of the deployment's last deploy or update while its work still
    holds them sealed (queued or running; they are dropped when it ends). A secret input it
    was planned with that is neither there nor in ``inputs`` must be sent again: 422."""
    earlier = {}
    for item in reversed(ctx.store.work_items(record.id)):
        if item.operation in ("deploy", "update"):
            earlier = ctx.sealer.open(item.sealed) if item.sealed else {}
            break
    missing = [k for k in service.earlier_secrets(record) if k not in {**earlier, **inputs}]
    if missing:
        raise Problem(422, "secret-inputs-needed", "Secret inputs are needed again",
                      f"the deployment was made with the secret input(s) {', '.join(missing)}"
                      ", which are never stored: send them again in 'inputs'")
    return earlier


def _update(ctx, who, deployment_id, source, inputs, sites, keep_failed, callback, response):
    """Queue an update with ``inputs`` merged over the deployment's: its stored inputs and
    the secret ones it was given before (still sealed; only those the template declares
    secret are kept)."""
    record = visible_deployment(ctx, who, deployment_id)
    callback = _callback(ctx, callback)
    earlier = _earlier_secrets(ctx, record, inputs)
    merged = {**earlier, **record.inputs, **inputs}
    with views.scratch_dir() as scratch:
        _, report = _validated(ctx, source, merged, scratch)
        public, secret = service.split_secret_inputs(report, merged)
    public = {k: v for k, v in public.items() if k not in earlier or k in inputs
              or k in record.inputs}  # a secret the template no longer declares secret
    payload = {"template": source, "inputs": public, "sites": sites,
               "keep_failed": keep_failed}
    work = _enqueue(ctx, record, "update", payload, secret, callback)
    return _accepted(response, record, work)


@router.put("/{deployment_id}", status_code=202,
            summary="Update to a new template; the inputs given are merged over its own")
def replace(deployment_id: str, body: UpdateRequest, response: Response,
            ctx: ServiceContext = Depends(context), who=Depends(principal)) -> dict:
    source = _source(body.template, body.template_name)
    return _update(ctx, who, deployment_id, source, body.inputs, body.sites, body.keep_failed,
                   body.callback_url, response)


@router.patch("/{deployment_id}", status_code=202, summary="Change some inputs")
def patch(deployment_id: str, body: InputsPatch, response: Response,
          ctx: ServiceContext = Depends(context), who=Depends(principal)) -> dict:
    record = visible_deployment(ctx, who, deployment_id)
    source = {"text": record.template_text}
    return _update(ctx, who, deployment_id, source, body.inputs, [], False,
                   body.callback_url, response)


@router.delete("/{deployment_id}", status_code=202,
               summary="Delete everything the deployment made (force: drop state anyway)")
def delete(deployment_id: str, response: Response, force: bool = False,
           callback_url: str | None = Query(None, pattern=r"^https?://", max_length=2048),
           ctx: ServiceContext = Depends(context), who=Depends(principal)) -> dict:
    record = visible_deployment(ctx, who, deployment_id)
    work = _enqueue(ctx, record, "delete", {"force": force}, {}, _callback(ctx, callback_url))
    return _accepted(response, record, work)


@router.get("/{deployment_id}/work", summary="The operations queued or run for it")
def work_items(deployment_id: str, ctx: ServiceContext = Depends(context),
               who=Depends(principal)) -> list[dict]:
    record = visible_deployment(ctx, who, deployment_id)
    return [views.work(w) for w in ctx.store.work_items(record.id)]


@router.get("/{deployment_id}/plan", summary="The last plan applied (or being applied)")
def plan(deployment_id: str, ctx: ServiceContext = Depends(context),
         who=Depends(principal)) -> dict:
    record = visible_deployment(ctx, who, deployment_id)
    if record.plan is None:
        raise Problem(404, "no-plan", "No plan yet", "the deployment has not been planned yet")
    return service.masked(record.plan)


@router.get("/{deployment_id}/outputs", responses={403: {"description": "reveal=true by "
                                                   "someone other than the owner"}})
def outputs(deployment_id: str, reveal: bool = Query(
                False, description="show the outputs computed from secrets (the owner only; "
                "recorded as an event without the values)"),
            ctx: ServiceContext = Depends(context), who=Depends(principal)) -> dict:
    record = visible_deployment(ctx, who, deployment_id)
    if reveal and who.owner != record.owner:
        raise forbidden("only the owner of a deployment may reveal its secret outputs")
    orch = service.orchestrator_for_work(ctx.store, ctx.settings.sites, record.owner)
    orch.sealer = ctx.sealer
    try:
        shown = orch.outputs(record.id, reveal=reveal)
        return shown if reveal else service.masked(shown)
    finally:
        service.release_orchestrator(orch)


@router.get("/{deployment_id}/template", response_class=Response,
            responses={200: {"content": {"application/yaml": {}}}})
def template(deployment_id: str, ctx: ServiceContext = Depends(context),
             who=Depends(principal)) -> Response:
    record = visible_deployment(ctx, who, deployment_id)
    return Response(record.template_text, media_type="application/yaml")


@router.get("/{deployment_id}/logs", summary="Nodes with logs, or one node's log as text",
            responses={200: {"content": {"text/plain": {}, "application/json": {}}}})
def logs(deployment_id: str, node: str | None = Query(None, max_length=255),
         ctx: ServiceContext = Depends(context), who=Depends(principal)):
    record = visible_deployment(ctx, who, deployment_id)
    folder = service.deployment_dir(record.id) / "logs"
    if node is None:
        return {"nodes": sorted(p.stem for p in folder.glob("*.log"))}
    wanted = node.replace("[", "-").rstrip("]")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", wanted):
        raise Problem(422, "invalid-request", "The request is invalid", "bad node name")
    files = [folder / f"{wanted}.log"] if "[" in node else sorted(folder.glob(f"{wanted}-*.log"))
    files = [f for f in files if f.is_file()]
    if not files:
        raise Problem(404, "no-log", "No log", f"no contextualisation log for node {node!r}")
    text = "".join(f.read_text(errors="replace") for f in files)
    return Response(text, media_type="text/plain")

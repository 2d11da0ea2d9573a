"""The dashboard's pages: deployments, the template catalogue, the deployment form and a
deployment's detail page with live progress."""
from __future__ import annotations

import re
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from orchestrator import service
from orchestrator.api.routes import catalogue, views
from orchestrator.dashboard import actions, forms, web

router = APIRouter(prefix=web.PREFIX, include_in_schema=False)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
BUSY = ("new", "planned", "deploying", "updating", "deleting")
NOTICES = {"deleted": "The deployment was deleted."}  # fixed texts: no text from the URL


def _ctx(request: Request):
    return request.app.state.orchestrator


def _template_entry(ctx, who, name: str) -> dict | None:
    entry = next((e for e in catalogue.templates(ctx=ctx, who=who) if e["name"] == name), None)
    if entry is None:
        return None
    secret = _secret_inputs(ctx, name)
    return {**entry, "inputs": [{**i, "secret": i["name"] in secret} for i in entry["inputs"]]}


def _secret_inputs(ctx, name: str) -> frozenset[str]:
    """The template's secret inputs, from its topology (the catalogue's JSON view masks the
    ``secret`` flag itself, so it cannot tell)."""
    cache = ctx.cache.setdefault("dashboard-secret-inputs", {})
    if name not in cache:
        path = service.catalogue_template(name)
        report = service.validate(path) if path else None
        topology = report.topology if report else None
        cache[name] = frozenset(i.name for i in topology.inputs if i.secret) \
            if topology else frozenset()
    return cache[name]


def _site_names(ctx, who) -> list[str]:
    return [s["name"] for s in catalogue.sites(ctx=ctx, who=who)["sites"]]


def _visible(ctx, who, deployment_id: str):
    try:
        record = ctx.store.get_deployment(deployment_id)
    except ValueError:
        return None
    if record is None or record.id != deployment_id or not who.can_see(record.owner,
                                                                       record.group):
        return None
    return record


def _not_found(request, session, what: str):
    return web.render("error.html", request, 404, session=session, title="Not found",
                      message=what)


@router.get("/static/{name}", name="dashboard_static")
def static(name: str):
    return web.static_file(name)


@router.get("/", name="dashboard_home")
def home(request: Request):
    session = web.current_session(request)
    if session is None:
        return web.signin_redirect(request)
    ctx = _ctx(request)
    records = [views.deployment(r) for r in ctx.store.list_deployments()
               if session.who.can_see(r.owner, r.group)]
    return web.render("deployments.html", request, session=session, deployments=records,
                      busy=BUSY, notice=NOTICES.get(request.query_params.get("notice", "")))


@router.get("/templates", name="dashboard_catalogue")
def catalogue_page(request: Request):
    session = web.current_session(request)
    if session is None:
        return web.signin_redirect(request)
    entries = catalogue.templates(ctx=_ctx(request), who=session.who)
    return web.render("catalogue.html", request, session=session, entries=entries)


def _form_page(request, session, entry, fields, status=200, **values):
    ctx = _ctx(request)
    values.setdefault("name", f"{entry['name']}-{secrets.token_hex(2)}")
    values.setdefault("name_error", None)
    values.setdefault("site_error", None)
    values.setdefault("general", [])
    values.setdefault("site_mode", "auto")
    values.setdefault("chosen", [])
    values.setdefault("group", "")
    return web.render("deploy.html", request, status, session=session, entry=entry,
                      fields=fields, sites=_site_names(ctx, session.who),
                      groups=sorted(session.who.groups), **values)


@router.get("/templates/{name}", name="dashboard_form")
def deploy_form(name: str, request: Request):
    session = web.current_session(request)
    if session is None:
        return web.signin_redirect(request)
    entry = _template_entry(_ctx(request), session.who, name)
    if entry is None:
        return _not_found(request, session, f"No catalogue template is named {name!r}.")
    return _form_page(request, session, entry, forms.fields_for(entry["inputs"]))


@router.post("/templates/{name}", name="dashboard_submit")
async def deploy_submit(name: str, request: Request):
    session, form = await web.signed_in_form(request)
    if form is None:
        return session
    return await run_in_threadpool(_submit, request, session, name, form)


def _submit(request, session, name: str, form: dict):
    ctx, who = _ctx(request), session.who
    entry = _template_entry(ctx, who, name)
    if entry is None:
        return _not_found(request, session, f"No catalogue template is named {name!r}.")
    fields = forms.fields_for(entry["inputs"])
    inputs = forms.submitted_inputs(fields, form)
    deployment_name = web.first(form, "name").strip()
    group = web.first(form, "group").strip() or None
    site_mode = "manual" if web.first(form, "site_mode") == "manual" else "auto"
    known = _site_names(ctx, who)
    chosen = [s for s in form.get("sites", []) if s in known] if site_mode == "manual" else []
    values = dict(name=deployment_name, group=group or "", site_mode=site_mode, chosen=chosen)
    name_error = None if NAME.match(deployment_name) else \
        "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
    site_error = "choose at least one site, or let the orchestrator choose" \
        if site_mode == "manual" and not chosen else None
    if group is not None and not who.in_group(group) and not who.admin:
        group, values["group"] = None, ""
    if name_error or site_error or any(f.errors for f in fields):
        return _form_page(request, session, entry, fields, 422, name_error=name_error,
                          site_error=site_error, **values)
    outcome = actions.submit(ctx, who, name, deployment_name, inputs, chosen, group)
    if outcome.record is None:
        general = forms.attach_diagnostics(fields, inputs, outcome.diagnostics,
                                           outcome.secrets.values())
        return _form_page(request, session, entry, fields, 422, general=general,
                          name_error=outcome.name_error, site_error=None, **values)
    return RedirectResponse(f"{web.PREFIX}/deployments/{outcome.record.id}", status_code=303)


@router.get("/deployments/{deployment_id}", name="dashboard_deployment")
def deployment(deployment_id: str, request: Request):
    session = web.current_session(request)
    if session is None:
        return web.signin_redirect(request)
    ctx = _ctx(request)
    record = _visible(ctx, session.who, deployment_id)
    if record is None:
        return _not_found(request, session, "This deployment does not exist (any more), or "
                          "it is not shared with you.")
    state = actions.progress(ctx, record.id, 0)
    outputs, outputs_error = actions.outputs(ctx, record) \
        if record.status == "deployed" else ({}, None)
    return web.render(
        "deployment.html", request, session=session, d=views.deployment(record),
        state=state, last_event=max([e["id"] for e in state["events"]] or [0]),
        outputs=outputs, outputs_error=outputs_error, busy=BUSY,
        resources=[views.resource(r) for r in ctx.store.resources(record.id)],
        log_nodes=actions.log_nodes(record), template_text=record.template_text)


@router.get("/deployments/{deployment_id}/progress", name="dashboard_progress")
def progress(deployment_id: str, request: Request, since: int = 0):
    session = web.current_session(request)
    if session is None:
        return JSONResponse({"error": "signed out"}, status_code=401)
    ctx = _ctx(request)
    if _visible(ctx, session.who, deployment_id) is None:
        return JSONResponse({"status": "deleted", "gone": True, "done": True, "events": []})
    return JSONResponse(actions.progress(ctx, deployment_id, max(since, 0)),
                        headers={"Cache-Control": "no-store"})


@router.get("/deployments/{deployment_id}/logs/{node}", name="dashboard_log")
def node_log(deployment_id: str, node: str, request: Request):
    session = web.current_session(request)
    if session is None:
        return web.signin_redirect(request)
    record = _visible(_ctx(request), session.who, deployment_id)
    text = actions.node_log(record, node) if record is not None else None
    if text is None:
        return _not_found(request, session, f"No log for node {node!r}.")
    return web.render("log.html", request, session=session, d=views.deployment(record),
                      node=node, text=text)


async def _action(request: Request, deployment_id: str, run):
    session, form = await web.signed_in_form(request)
    if form is None:
        return session
    ctx = _ctx(request)
    record = await run_in_threadpool(_visible, ctx, session.who, deployment_id)
    if record is None:
        return _not_found(request, session, "This deployment does not exist (any more).")
    await run_in_threadpool(run, ctx, record, form)
    return RedirectResponse(f"{web.PREFIX}/deployments/{record.id}", status_code=303)


@router.post("/deployments/{deployment_id}/delete", name="dashboard_delete")
async def delete(deployment_id: str, request: Request):
    return await _action(request, deployment_id, lambda ctx, record, form: actions.delete(
        ctx, record, force=web.first(form, "force") == "on"))


@router.post("/deployments/{deployment_id}/retry", name="dashboard_retry")
async def retry(deployment_id: str, request: Request):
    return await _action(request, deployment_id,
                         lambda ctx, record, form: actions.retry(ctx, record))

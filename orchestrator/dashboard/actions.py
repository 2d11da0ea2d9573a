"""What the dashboard's buttons do, on the service's store and work queue, the same way the
REST API's routes do: validate with the CLI's validator, keep secret inputs only sealed in
the work item, queue the work for the background workers."""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator import service
from orchestrator.api.routes import views
from orchestrator.errors import OrchestratorError


@dataclass
class Submission:
    """The outcome of a deployment form: the new deployment, or why not."""
    record: object = None
    diagnostics: list = field(default_factory=list)
    secrets: dict = field(default_factory=dict)
    name_error: str | None = None


def _enqueue(ctx, record, operation: str, payload: dict, secret: dict | None = None):
    sealed = ctx.sealer.seal(secret) if secret else None
    work = ctx.store.enqueue_work(record.id, operation, payload, sealed=sealed)
    ctx.store.add_event(record.id, "queued", f"{operation} queued (dashboard)",
                        data={"work": work.id})
    return work


def submit(ctx, who, template_name: str, name: str, inputs: dict, sites: list[str],
           group: str | None) -> Submission:
    """Validate the catalogue template with ``inputs`` and queue its deployment."""
    path = service.catalogue_template(template_name)
    if path is None:
        raise LookupError(template_name)
    report = service.validate_inputs(path, inputs, ctx.settings.import_hosts)
    public, secret = service.split_secret_inputs(report, inputs) if report.topology \
        else (inputs, {})
    if not report.valid:
        return Submission(diagnostics=list(report.diagnostics), secrets=secret)
    try:
        service.require_inputs(report)
    except OrchestratorError as exc:  # a required input left empty
        return Submission(diagnostics=list(exc.diagnostics), secrets=secret)
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    try:
        record = ctx.store.create_deployment(name, owner=who.owner, group=group,
                                             template_text=text, inputs=public,
                                             sites=ctx.settings.sites)
    except ValueError as exc:
        return Submission(name_error=str(exc), secrets=secret)
    _enqueue(ctx, record, "deploy", {"template": {"catalogue": template_name},
                                     "inputs": public, "sites": sites, "keep_failed": False},
             secret)
    return Submission(record=record)


def delete(ctx, record, force: bool = False) -> None:
    _enqueue(ctx, record, "delete", {"force": force})


def retry(ctx, record) -> bool:
    """Run the last deploy or update again (its template, inputs and sites; secret inputs
    are not kept, so templates generate them again or fall back to their defaults)."""
    last = [w for w in ctx.store.work_items(record.id) if w.operation in ("deploy", "update")]
    if last:
        payload = dict(last[-1].payload)
        operation = last[-1].operation
    else:
        payload = {"template": {"text": record.template_text}, "inputs": record.inputs,
                   "sites": [], "keep_failed": False}
        operation = "deploy"
    _enqueue(ctx, record, operation, payload)
    return True


def outputs(ctx, record) -> tuple[dict, str | None]:
    """(outputs with secrets masked, an error text)."""
    try:
        orch = service.orchestrator_for_work(ctx.store, ctx.settings.sites, record.owner)
    except OrchestratorError as exc:
        return {}, str(exc)
    try:
        return service.masked(orch.outputs(record.id)), None
    except OrchestratorError as exc:
        return {}, str(exc)
    finally:
        service.release_orchestrator(orch)


def log_nodes(record) -> list[str]:
    folder = service.deployment_dir(record.id) / "logs"
    return sorted(p.stem for p in folder.glob("*.log")) if folder.is_dir() else []


def node_log(record, node: str) -> str | None:
    """One node's contextualisation log (``node`` as log_nodes lists it)."""
    if node not in log_nodes(record):
        return None
    path = service.deployment_dir(record.id) / "logs" / f"{node}.log"
    return path.read_text(errors="replace")


def progress(ctx, deployment_id: str, since: int) -> dict:
    """Status and new events for the live view; ``gone`` once the deployment is deleted."""
    record = ctx.store.get_deployment(deployment_id)
    if record is None or record.id != deployment_id:
        return {"status": "deleted", "gone": True, "done": True, "events": []}
    pending = ctx.store.pending_work(record.id)
    found = ctx.store.events(record.id, since, 500)
    return {"status": record.status, "status_reason": service.masked(record.status_reason),
            "pending_work": pending, "gone": False,
            "done": pending == 0 and record.status in views.TERMINAL,
            "events": [event_view(e) for e in found]}


def event_view(event) -> dict:
    data = service.masked(event.to_dict())
    return {"id": data["id"], "ts": str(data["ts"])[:19].replace("T", " "),
            "kind": data["kind"], "level": data["level"], "step": data.get("step"),
            "message": data["message"]}

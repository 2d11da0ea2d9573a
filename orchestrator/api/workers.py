"""Background workers: threads of this replica that claim queued work from the state store
(several replicas share one PostgreSQL and never run the same work twice), run it through
the orchestrator (plan + apply, or delete) while heartbeating it, and POST the callback.

A janitor thread hands the work of dead workers back to the queue: a worker process that is
gone from this host at once, one on another host when its heartbeat is older than
``work_stale_s``. The engine resumes such a deployment from its state."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from orchestrator import service
from orchestrator.api.routes import views
from orchestrator.errors import OrchestratorError, StateLockedError

log = logging.getLogger("orchestrator.api.workers")


class WorkerPool:
    def __init__(self, ctx):
        self.ctx = ctx
        self.settings = ctx.settings
        self.store = ctx.store
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self._janitor, "work-janitor")
        for index in range(self.settings.workers):
            self._spawn(self._loop, f"worker-{index}")

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop claiming; work still running is left to finish or, if the process exits
        first, to be resumed by another worker."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)

    # -- loops --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.store.claim_work(self.worker_id)
            except Exception as exc:  # noqa: BLE001 - the database may be restarting
                log.warning("claiming work failed: %s", exc)
                item = None
            if item is None:
                self._stop.wait(self.settings.poll_s)
                continue
            self._run(item)

    def _janitor(self) -> None:
        stale = timedelta(seconds=self.settings.work_stale_s)
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                for item in self.store.requeue_dead_work(stale):
                    self.store.add_event(item.deployment_id, "work-resumed",
                                         f"{item.operation} handed back to the queue: worker "
                                         f"{item.claimed_by} is gone", level="warning",
                                         data={"work": item.id, "worker": item.claimed_by})
            except Exception as exc:  # noqa: BLE001
                log.warning("recovering dead work failed: %s", exc)

    # -- one work item ------------------------------------------------------------------------
    def _run(self, item) -> None:
        stop_beat = threading.Event()
        beater = threading.Thread(target=self._beat, args=(item.id, stop_beat), daemon=True,
                                  name=f"work-heartbeat-{item.id[:8]}")
        beater.start()
        error = None
        try:
            self.store.add_event(item.deployment_id, "work-started",
                                 f"{item.operation} started by {self.worker_id} (attempt "
                                 f"{item.attempts})", data={"work": item.id,
                                                            "worker": self.worker_id,
                                                            "attempt": item.attempts})
            error = run_work(self.ctx, item)
        except LookupError:
            error = None  # the deployment was deleted meanwhile
        except Exception as exc:  # noqa: BLE001 - a worker never dies of one item
            log.error("%s of deployment %s failed: %s: %s", item.operation, item.deployment_id,
                      type(exc).__name__, exc)
            error = f"internal error: {type(exc).__name__}"
            _mark_failed(self.store, item, error)
        finally:
            stop_beat.set()
            beater.join()
        if error == _BUSY:
            self.store.finish_work(item.id, self.worker_id, error="deployment busy")
            self.store.enqueue_work(item.deployment_id, item.operation, item.payload,
                                    sealed=item.sealed, callback_url=item.callback_url)
            return
        self.store.finish_work(item.id, self.worker_id, error=error)
        if item.callback_url:
            notify(self.store, item)

    def _beat(self, work_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_s):
            try:
                if not self.store.heartbeat_work(work_id, self.worker_id):
                    return
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat of work %s failed: %s", work_id, exc)


_BUSY = "\0busy"


def run_work(ctx, item) -> str | None:
    """Run one work item; the error text when it failed (None when it succeeded)."""
    store = ctx.store
    record = store.get_deployment(item.deployment_id)
    if record is None:
        return None
    secret = ctx.sealer.open(item.sealed) if item.sealed else {}
    credentials = {site: ctx.sealer.open(sealed)
                   for site, sealed in store.sealed_credentials(record.owner).items()}
    payload = item.payload
    try:
        orch = service.orchestrator_for_work(store, ctx.settings.sites, record.owner,
                                             payload.get("sites") or None, credentials,
                                             ctx.settings.step_timeout_s)
    except OrchestratorError as exc:
        return _mark_failed(store, item, str(exc))
    try:
        if item.operation == "delete":
            run = orch.delete(record.id, force=bool(payload.get("force")))
            return None if run.ok or payload.get("force") else "; ".join(
                f"{k}: {v}" for k, v in run.failed.items())
        return _deploy(orch, record, payload, secret)
    except StateLockedError:
        return _BUSY
    except OrchestratorError as exc:
        return _mark_failed(store, item, str(exc))
    finally:
        service.release_orchestrator(orch)


def _deploy(orch, record, payload: dict, secret: dict) -> str | None:
    folder = service.deployment_dir(record.id) / "template"
    template = views.template_file(payload["template"], folder)
    sets = service.input_sets({**payload.get("inputs", {}), **secret})
    result = orch.plan(template, sets=sets, name=record.name)
    if not result.plan.has_changes:
        if record.status in ("new", "failed"):
            orch.store.update_deployment(record.id, status="deployed", status_reason=None)
        return None
    applied = orch.apply(result.plan, sets=sets, keep_failed=bool(payload.get("keep_failed")),
                         report=result.report)
    if applied.run.ok:
        return None
    return "; ".join(f"{k}: {v}" for k, v in applied.run.failed.items()) or "failed"


def _mark_failed(store, item, message: str) -> str:
    try:
        store.update_deployment(item.deployment_id, status="failed", status_reason=message)
        store.add_event(item.deployment_id, "work-failed", f"{item.operation} failed: "
                        f"{message}", level="error", data={"work": item.id})
    except LookupError:
        pass
    return message


def notify(store, item) -> None:
    """POST the outcome to the work's callback URL (a few tries; failures are logged)."""
    import httpx

    record = store.get_deployment(item.deployment_id)
    body = {"deployment": item.deployment_id, "operation": item.operation, "work": item.id,
            "status": record.status if record else "deleted",
            "status_reason": record.status_reason if record else None,
            "name": record.name if record else None}
    for attempt in range(3):
        try:
            response = httpx.post(item.callback_url, json=body, timeout=10)
            if response.status_code < 500:
                return
        except httpx.HTTPError as exc:
            log.warning("callback for deployment %s failed (try %d): %s", item.deployment_id,
                        attempt + 1, exc)
        threading.Event().wait(1 + attempt)

"""Background workers: threads that claim queued work from the state store (several replicas
share one PostgreSQL and never run the same work twice), run it through the orchestrator
(plan + apply, or delete) while heartbeating it, and POST the callback.

The threads run in a child process of the server by default (``workers_process``), so that
planning and applying, which are CPU work, do not take the interpreter lock from the
requests the API serves (and, niced by ``workers_nice``, yield the CPU to them). The child
shares the state database, dies with the server, and is restarted (its running work handed
back to the queue) if it dies alone. It claims work in the server's name
(``host:server-pid:token``), so other replicas judge that work by the server's life. An
in-memory database cannot be shared: there the threads run in the server.

A janitor thread hands the work of dead workers back to the queue: a worker process that is
gone from this host at once, one on another host when its heartbeat is older than
``work_stale_s``. The engine resumes such a deployment from its state."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

from orchestrator import service
from orchestrator.api import callbacks
from orchestrator.api.sealing import StoredKeys
from orchestrator.api.routes import views
from orchestrator.errors import OrchestratorError, StateLockedError

log = logging.getLogger("orchestrator.api.workers")
RESTART_DELAYS_S = (1, 2, 5, 10, 30)


def new_worker_id(server_pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{server_pid or os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerPool:
    def __init__(self, ctx, worker_id: str | None = None):
        self.ctx = ctx
        self.settings = ctx.settings
        self.store = ctx.store
        self.worker_id = worker_id or new_worker_id()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._child: subprocess.Popen | None = None

    def in_child_process(self) -> bool:
        wanted = self.settings.workers_process
        return not self.store.in_memory if wanted is None else bool(wanted)

    def start(self) -> None:
        if self.in_child_process():
            self._spawn(self._supervise, "worker-process")
            return
        self.start_threads()

    def start_threads(self) -> None:
        self._spawn(self._janitor, "work-janitor")
        for index in range(self.settings.workers):
            self._spawn(self._loop, f"worker-{index}")

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop claiming; work still running is left to finish or, if the process exits
        first, to be resumed by another worker. A worker process gets ``timeout_s`` to stop;
        what it still ran is handed back to the queue at once."""
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout_s + 2)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for thread in self._threads:
            thread.join(timeout_s)

    # -- the worker process ---------------------------------------------------------------------
    def _supervise(self) -> None:
        """Run the worker process; restart it (its running work handed back) if it dies."""
        failures = 0
        while not self._stop.is_set():
            child = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.api.workers", "--worker-id",
                 self.worker_id, "--server-pid", str(os.getpid())],
                stdin=subprocess.PIPE, text=True)
            self._child = child
            try:
                child.stdin.write(self.settings.to_json() + "\n")
                child.stdin.close()
            except OSError:
                pass
            code = child.wait()
            self._requeue_own_work()
            if self._stop.is_set():
                return
            failures += 1
            delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S)) - 1]
            log.error("the worker process exited (%s); restarting it in %s s", code, delay)
            self.worker_id = new_worker_id()
            self._stop.wait(delay)

    def _requeue_own_work(self) -> None:
        try:
            for item in self.store.requeue_work_of(self.worker_id):
                self.store.add_event(item.deployment_id, "work-resumed",
                                     f"{item.operation} handed back to the queue: the worker "
                                     "process stopped", level="warning",
                                     data={"work": item.id, "worker": item.claimed_by})
        except Exception as exc:  # noqa: BLE001 - the database may be gone at shutdown
            log.warning("handing back the work of %s failed: %s", self.worker_id, exc)

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
            error = run_work(self.ctx, item)
        except Exception as exc:  # noqa: BLE001 - a worker never dies of one item
            error = self._internal_error(item, exc)
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
            notify(self.store, item, self.settings.callback_hosts)

    def _internal_error(self, item, exc: Exception) -> str | None:
        """What an item that raised leaves: nothing when its deployment was deleted meanwhile
        (the store's LookupError for a deployment it no longer has); otherwise the
        deployment is marked failed with the error's message, and the traceback goes to the
        server log only."""
        if isinstance(exc, LookupError) and _deleted(self.store, item.deployment_id):
            return None
        log.error("%s of deployment %s failed", item.operation, item.deployment_id,
                  exc_info=exc)
        text = str(exc)
        text = text if len(text) <= 300 else text[:300] + "..."
        return _mark_failed(self.store, item, f"internal error: {type(exc).__name__}"
                            + (f": {text}" if text else ""))

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
    orch.key_vault = StoredKeys(store, ctx.sealer)  # any replica may run the next operation
    orch.sealer = ctx.sealer  # seals the outputs computed from secrets
    try:
        if item.operation == "delete":
            run = orch.delete(record.id, force=bool(payload.get("force")))
            return None if run.ok or payload.get("force") else "; ".join(
                f"{k}: {v}" for k, v in run.failed.items())
        return _deploy(orch, record, payload, secret, ctx.settings.import_hosts)
    except StateLockedError:
        return _BUSY
    except OrchestratorError as exc:
        return _mark_failed(store, item, str(exc))
    finally:
        service.release_orchestrator(orch)


def _deploy(orch, record, payload: dict, secret: dict, import_hosts=()) -> str | None:
    folder = service.deployment_dir(record.id) / "template"
    template = views.template_file(payload["template"], folder)
    sets = service.input_sets({**payload.get("inputs", {}), **secret})
    result = orch.plan(template, sets=sets, name=record.name,
                       import_options=service.service_import_options(import_hosts))
    if not result.plan.has_changes:
        orch.settle(result.plan)
        return None
    applied = orch.apply(result.plan, sets=sets, keep_failed=bool(payload.get("keep_failed")),
                         report=result.report)
    if applied.run.ok:
        return None
    return "; ".join(f"{k}: {v}" for k, v in applied.run.failed.items()) or "failed"


def _deleted(store, deployment_id: str) -> bool:
    try:
        return store.get_deployment(deployment_id) is None
    except Exception as exc:  # noqa: BLE001 - the database may be restarting
        log.warning("looking up deployment %s failed: %s", deployment_id, exc)
        return False


def _mark_failed(store, item, message: str) -> str:
    try:
        store.update_deployment(item.deployment_id, status="failed", status_reason=message)
        store.add_event(item.deployment_id, "work-failed", f"{item.operation} failed: "
                        f"{message}", level="error", data={"work": item.id})
    except LookupError:
        pass
    return message


def notify(store, item, allowed_hosts: tuple[str, ...] = ()) -> None:
    """POST the outcome to the work's callback URL (a few tries; failures are logged), if
    the URL is still one the service may call (``api.callbacks``)."""
    import httpx

    record = store.get_deployment(item.deployment_id)
    why = callbacks.refusal(item.callback_url, allowed_hosts)
    if why is not None:
        log.warning("callback for deployment %s not sent: %s", item.deployment_id, why)
        if record is not None:
            store.add_event(item.deployment_id, "callback-refused",
                            f"callback not sent: {why}", level="warning",
                            data={"work": item.id})
        return
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


# -- the worker process's own side ----------------------------------------------------------------

def _die_with(server_pid: int) -> None:
    """Ask the kernel to kill this process when the server goes (Linux); elsewhere the
    watch in ``child_main`` notices within a second."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != server_pid:
        os._exit(0)


def child_main(argv=None) -> int:
    """``python -m orchestrator.api.workers --worker-id ID --server-pid PID``, the settings
    as one JSON line on stdin: the worker threads of a server, in their own process."""
    import argparse

    from orchestrator.api.sealing import Sealer, install_redaction
    from orchestrator.api.settings import ServiceSettings

    parser = argparse.ArgumentParser(prog="orchestrator.api.workers")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with(args.server_pid)
    settings = ServiceSettings.from_json(sys.stdin.readline())
    if settings.workers_nice > 0:
        os.nice(settings.workers_nice)  # background work yields the CPU to the API's requests
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:  [workers] %(message)s")
    install_redaction()
    store = service.open_store(settings.db)
    sealer = Sealer.from_settings(settings.secret_key, service.data_dir() / "server.key")
    pool = WorkerPool(SimpleNamespace(settings=settings, store=store, sealer=sealer),
                      worker_id=args.worker_id)
    stopping = []  # set by a signal handler: a plain append, no lock to deadlock on
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    pool.start_threads()
    while not stopping and os.getppid() == args.server_pid:
        time.sleep(0.2)
    pool.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())

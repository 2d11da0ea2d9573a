"""The executor: walks a plan's DAG concurrently, resumably, leaving nothing behind.

* Independent steps run in parallel; provider calls are bounded per site
  (``Site.concurrency``) and configuration runs are bounded globally.
* Intent is written to state before a provider is called, and every resource is
  tagged with deployment, node and index, so a crash at any point is recovered by the
  next run (providers' ``create`` finds what exists by its tags).
* Servers are waited for with one ``poll`` call per site per interval, never one call
  per server.
* Transient errors are retried with exponential backoff; a compute instance that fails
  for good on one site is moved to the next ranked site (failover), with the reason of
  every attempt kept in the events; when a step still fails, what this run created is
  rolled back unless ``keep_failed``.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from orchestrator.engine.failover import CannotMove
from orchestrator.engine.steps import StepContext, StepFailed, StepOutcome, run_step
from orchestrator.errors import OrchestratorError, ProviderError
from orchestrator.plan.model import NOOP, Plan, Step
from orchestrator.providers.base import ACTIVE, ERROR, TransientProviderError

log = logging.getLogger("orchestrator.engine")


@dataclass
class ExecutorOptions:
    keep_failed: bool = False
    retries: int = 5
    backoff_s: float = 0.2
    backoff_max_s: float = 10.0
    step_timeout_s: float = 1800.0
    poll_interval_s: float = 0.2
    configure_concurrency: int = 50
    max_workers: int = 128


@dataclass
class RunResult:
    ok: bool
    failed: dict = field(default_factory=dict)  # step id -> message
    skipped: list = field(default_factory=list)
    rolled_back: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # step id -> (start, end) monotonic


class Executor:
    def __init__(self, ctx: StepContext, plan: Plan, options: ExecutorOptions | None = None):
        self.ctx = ctx
        self.plan = plan
        self.options = options or ExecutorOptions()
        if ctx is not None:  # a volume made again beside its failed-over server
            ctx.wait_timeout_s = self.options.step_timeout_s
        self.result = RunResult(ok=True)
        self._lock = threading.Lock()
        self._site_busy: dict[str | None, int] = {}
        self._configuring = 0
        self._waiting: dict[str, dict[str, tuple[Step, float]]] = {}  # site -> id -> step
        self._polled: dict[str | None, float] = {}  # site -> when it was last polled

    # -- scheduling ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        steps = {s.id: s for s in self.plan.steps}
        remaining = {sid: {d for d in s.depends_on if d in steps} for sid, s in steps.items()}
        dependants: dict[str, list[str]] = {}
        for sid, deps in remaining.items():
            for dep in deps:
                dependants.setdefault(dep, []).append(sid)
        ready = [sid for sid, deps in remaining.items() if not deps]
        done: set[str] = set()
        running: dict[Future, str] = {}
        failed = False
        workers = min(self.options.max_workers, max(4, len(steps)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step") as pool:
            while ready or running or self._has_waiting():
                if not failed:
                    ready = self._launch(pool, ready, steps, running)
                finished = self._poll_waiting(pool, running)
                if running:
                    completed, _ = wait(list(running), timeout=self.options.poll_interval_s,
                                        return_when=FIRST_COMPLETED)
                else:
                    completed = set()
                    if self._has_waiting():
                        time.sleep(self.options.poll_interval_s)
                for future in completed:
                    sid = running.pop(future)
                    outcome = self._outcome(future, steps[sid])
                    if outcome == "waiting":
                        continue
                    finished.append((sid, outcome))
                for sid, outcome in finished:
                    self._release(steps[sid])
                    if outcome is True:
                        done.add(sid)
                        self.result.timings.setdefault(sid, (0.0, 0.0))
                        for nxt in dependants.get(sid, []):
                            remaining[nxt].discard(sid)
                            if not remaining[nxt]:
                                ready.append(nxt)
                    else:
                        failed = True
                        self.result.ok = False
                        self.result.failed[sid] = outcome
                if failed:
                    ready = []
        self.result.skipped = [sid for sid in steps if sid not in done and sid not in
                               self.result.failed]
        if not failed and self.result.skipped:  # a dependency cycle: never report success
            failed = True
            self.result.ok = False
            self.result.failed["plan"] = ("steps whose dependencies never finished: "
                                          + ", ".join(self.result.skipped[:5]))
        if failed and not self.options.keep_failed:
            self.result.rolled_back = self.ctx.rollback()
        return self.result

    def _has_waiting(self) -> bool:
        with self._lock:
            return any(self._waiting.values())

    def _launch(self, pool, ready, steps, running) -> list[str]:
        postponed = []
        for sid in ready:
            step = steps[sid]
            if not self._acquire(step):
                postponed.append(sid)
                continue
            self.result.timings[sid] = (time.monotonic(), 0.0)
            running[pool.submit(self._attempts, step)] = sid
        return postponed

    def _limited_by_site(self, step: Step) -> bool:
        return step.kind in ("compute", "volume", "network", "port", "attachment") and \
            step.action != NOOP

    def _acquire(self, step: Step) -> bool:
        with self._lock:
            if self._limited_by_site(step):
                limit = self.ctx.concurrency(step.site)
                if self._site_busy.get(step.site, 0) >= limit:
                    return False
                self._site_busy[step.site] = self._site_busy.get(step.site, 0) + 1
            elif step.kind == "software" and step.action != NOOP:
                if self._configuring >= self.options.configure_concurrency:
                    return False
                self._configuring += 1
            return True

    def _release(self, step: Step) -> None:
        with self._lock:
            if self._limited_by_site(step):
                self._site_busy[step.site] = max(0, self._site_busy.get(step.site, 0) - 1)
            elif step.kind == "software" and step.action != NOOP:
                self._configuring = max(0, self._configuring - 1)

    # -- one step -----------------------------------------------------------------------------
    def _attempts(self, step: Step) -> StepOutcome:
        """Run a step with retries on transient errors."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return run_step(self.ctx, step)
            except TransientProviderError as exc:
                if attempt >= self.options.retries:
                    raise StepFailed(f"{exc} (gave up after {attempt} attempts)") from exc
                delay = min(self.options.backoff_max_s,
                            self.options.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1)
                self.ctx.event(step, "retry", f"{step.id}: {exc}; retrying in {delay:.1f}s "
                               f"(attempt {attempt + 1}/{self.options.retries})", level="warning")
                time.sleep(delay)

    def _outcome(self, future: Future, step: Step):
        try:
            outcome = future.result()
        except (StepFailed, OrchestratorError) as exc:
            return self._fail_or_failover(step, str(exc))
        except Exception as exc:  # a bug must not leave the run hanging
            log.error("step %s: internal error", step.id, exc_info=exc)
            return self._fail_or_failover(step, f"internal error: {type(exc).__name__}: {exc}")
        return self._settle(step, outcome)

    def _activate(self, step: Step, resource) -> StepOutcome:
        self.ctx.activated(step, resource)
        return StepOutcome()

    def _settle(self, step: Step, outcome: StepOutcome):
        """True when the step is done; "waiting" when its resource is still building."""
        if outcome.pending_id is not None:
            with self._lock:
                self._waiting.setdefault(outcome.site, {})[outcome.pending_id] = (
                    step, time.monotonic())
            return "waiting"
        self._finish_timing(step.id)
        return True

    def _finish_timing(self, sid: str) -> None:
        start, _ = self.result.timings.get(sid, (time.monotonic(), 0.0))
        self.result.timings[sid] = (start, time.monotonic())

    def _fail_or_failover(self, step: Step, message: str):
        try:
            replacement = self.ctx.failover(step, message)
        except CannotMove as exc:  # what is attached to the server cannot follow it
            replacement, message = None, str(exc)
        if replacement is not None:
            return self._settle(step, replacement)
        self.ctx.event(step, "step-failed", f"{step.id} failed: {message}", level="error")
        self._finish_timing(step.id)
        return message

    # -- batched waiting ----------------------------------------------------------------------
    def _poll_waiting(self, pool, running) -> list[tuple[str, object]]:
        """One poll call per site for every resource still building."""
        finished: list[tuple[str, object]] = []
        now = time.monotonic()
        with self._lock:
            snapshot = {site: dict(items) for site, items in self._waiting.items() if items
                        and now - self._polled.get(site, 0.0) >= self.options.poll_interval_s}
        for site, items in snapshot.items():
            self._polled[site] = now
            try:
                states = self.ctx.poll(site, list(items))
            except TransientProviderError as exc:
                self.ctx.event(None, "poll-retry", f"polling site {site}: {exc}", level="warning")
                continue
            except ProviderError as exc:
                states = {pid: None for pid in items}
                message = str(exc)
            else:
                message = ""
            now = time.monotonic()
            for pid, (step, since) in items.items():
                resource = states.get(pid)
                verdict = None
                if resource is not None and resource.status == ACTIVE:
                    verdict = True
                elif resource is None and message:
                    verdict = message
                elif resource is not None and resource.status == ERROR:
                    verdict = f"{step.instance} went to ERROR: {resource.fault or 'no reason'}"
                elif resource is not None and resource.status == "deleted":
                    verdict = f"{step.instance} disappeared while building"
                elif now - since > self.options.step_timeout_s:
                    verdict = f"timed out after {self.options.step_timeout_s:g}s waiting for " \
                              f"{step.instance} to become active"
                if verdict is None:
                    continue
                with self._lock:
                    self._waiting[site].pop(pid, None)
                if verdict is True:  # record it off the scheduler thread
                    running[pool.submit(self._activate, step, resource)] = step.id
                else:
                    outcome = self._fail_or_failover(step, verdict)
                    if outcome != "waiting":
                        finished.append((step.id, outcome))
        return finished


def execute(ctx: StepContext, plan: Plan, options: ExecutorOptions | None = None,
            on_done: Callable[[RunResult], None] | None = None) -> RunResult:
    result = Executor(ctx, plan, options).run()
    if on_done:
        on_done(result)
    return result

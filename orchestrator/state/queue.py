"""The service's work queue, mixed into ``Store``: enqueue an operation, claim the oldest
queued one (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas never wait on
each other's rows; a compare-and-set UPDATE on every backend, so two workers never both win),
heartbeat it while it runs, finish it, and hand the work of a dead worker back to the queue.

A worker is named like a lock holder (``host:pid:token``): its work is taken for dead when
that process is gone from this host or its heartbeat is older than the staleness limit."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, insert, literal_column, select, update

from orchestrator.state import lock
from orchestrator.state.models import deployments, work
from orchestrator.state.records import (
    WORK_OPERATIONS,
    DeploymentSummary,
    WorkRecord,
    summary_from_row,
)
from orchestrator.state.records import as_utc as _utc
from orchestrator.state.records import utc_now as _now

ACTIVE_WORK = ("queued", "running")
# A status read: one indexed query with the pending work counted in it, built once. The
# statuses are written into the SQL (an expanding IN parameter is re-rendered on every
# execution, a third of the read's cost).
_PENDING = (select(func.count()).select_from(work)
            .where(work.c.deployment_id == deployments.c.id,
                   work.c.status.in_([literal_column(f"'{s}'") for s in ACTIVE_WORK]))
            .scalar_subquery())
_SUMMARY = select(
    deployments.c.id, deployments.c.name, deployments.c.owner, deployments.c.group_name,
    deployments.c.status, deployments.c.status_reason, deployments.c.inputs,
    deployments.c.outputs, deployments.c.serial, deployments.c.created_at,
    deployments.c.updated_at, _PENDING.label("pending_work"),
).where(deployments.c.id == bindparam("deployment_id"))


class WorkQueue:
    """Methods of ``Store`` (they use its ``_transaction``)."""

    def enqueue_work(self, deployment_id: str, operation: str, payload: dict | None = None, *,
                     sealed: str | None = None, callback_url: str | None = None) -> WorkRecord:
        if operation not in WORK_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of "
                             f"{', '.join(WORK_OPERATIONS)}")
        now = _now()
        row = dict(id=uuid.uuid4().hex, deployment_id=deployment_id, operation=operation,
                   status="queued", payload=dict(payload or {}), sealed=sealed,
                   callback_url=callback_url, claimed_by=None, heartbeat=None, attempts=0,
                   error=None, created_at=now, updated_at=now)
        with self._transaction() as session:
            session.execute(insert(work).values(**row))
        return _work_record(row)

    def claim_work(self, worker: str) -> WorkRecord | None:
        """The oldest queued work whose deployment has no other work running, now marked
        running by ``worker``; None when there is none. The deployment's "work-started"
        event is written in the same transaction, so every attempt counted has its event
        (a worker killed just after claiming leaves both, or neither)."""
        for _attempt in range(5):
            with self._transaction() as session:
                busy = select(work.c.deployment_id).where(work.c.status == "running")
                query = (select(work.c.id).where(work.c.status == "queued",
                                                 work.c.deployment_id.not_in(busy))
                         .order_by(work.c.created_at, work.c.id).limit(1))
                if session.bind.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                work_id = session.execute(query).scalar_one_or_none()
                if work_id is None:
                    return None
                now = _now()
                won = session.execute(
                    update(work).where(work.c.id == work_id, work.c.status == "queued")
                    .values(status="running", claimed_by=worker, heartbeat=now,
                            attempts=work.c.attempts + 1, updated_at=now)).rowcount == 1
                if won:
                    row = session.execute(select(work).where(work.c.id == work_id)
                                          ).mappings().one()
                    self._add_event(
                        session, row["deployment_id"], "work-started",
                        f"{row['operation']} started by {worker} (attempt {row['attempts']})",
                        step=None, level="info",
                        data={"work": work_id, "worker": worker, "attempt": row["attempts"]})
                    return _work_record(row)
        return None

    def requeue_work_of(self, worker: str) -> list[WorkRecord]:
        """Hand the running work of ``worker`` (known to be dead) back to the queue."""
        with self._transaction() as session:
            rows = session.execute(select(work).where(work.c.status == "running",
                                                      work.c.claimed_by == worker)
                                   ).mappings().all()
            session.execute(update(work).where(work.c.status == "running",
                                               work.c.claimed_by == worker)
                            .values(status="queued", claimed_by=None, heartbeat=None,
                                    updated_at=_now()))
        return [_work_record(row) for row in rows]

    def heartbeat_work(self, work_id: str, worker: str) -> bool:
        """False when ``worker`` no longer holds the work (it was taken for dead)."""
        with self._transaction() as session:
            return session.execute(
                update(work).where(work.c.id == work_id, work.c.claimed_by == worker,
                                   work.c.status == "running")
                .values(heartbeat=_now())).rowcount == 1

    def finish_work(self, work_id: str, worker: str, error: str | None = None) -> bool:
        """Mark the work done (or failed with ``error``) and drop its secrets."""
        now = _now()
        with self._transaction() as session:
            return session.execute(
                update(work).where(work.c.id == work_id, work.c.claimed_by == worker,
                                   work.c.status == "running")
                .values(status="failed" if error else "done", error=error, sealed=None,
                        heartbeat=None, updated_at=now)).rowcount == 1

    def requeue_dead_work(self, stale_after: timedelta) -> list[WorkRecord]:
        """Hand running work whose worker is dead back to the queue; what was handed back."""
        now = _now()
        with self._transaction() as session:
            rows = session.execute(select(work).where(work.c.status == "running")
                                   ).mappings().all()
        requeued = []
        for row in rows:
            holder = lock.LockState("", row["claimed_by"], _utc(row["heartbeat"]), None)
            if not _dead(holder, now, stale_after):
                continue
            with self._transaction() as session:
                condition = and_(work.c.id == row["id"], work.c.status == "running",
                                 work.c.claimed_by == row["claimed_by"])
                if session.execute(update(work).where(condition).values(
                        status="queued", claimed_by=None, heartbeat=None,
                        updated_at=now)).rowcount == 1:
                    requeued.append(_work_record(row))
        return requeued

    def work_items(self, deployment_id: str | None = None, status: str | None = None
                   ) -> list[WorkRecord]:
        """Oldest first."""
        query = select(work).order_by(work.c.created_at, work.c.id)
        if deployment_id is not None:
            query = query.where(work.c.deployment_id == deployment_id)
        if status is not None:
            query = query.where(work.c.status == status)
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [_work_record(row) for row in rows]

    def pending_work(self, deployment_id: str) -> int:
        """How many operations on the deployment are queued or running."""
        with self._reading() as connection:
            return connection.execute(select(func.count()).select_from(work).where(
                work.c.deployment_id == deployment_id,
                work.c.status.in_(ACTIVE_WORK))).scalar_one()

    def deployment_summary(self, deployment_id: str) -> DeploymentSummary | None:
        """The deployment's status columns and pending work count by id, in one query."""
        with self._reading(keep=True) as connection:
            row = connection.execute(_SUMMARY, {"deployment_id": deployment_id}
                                     ).mappings().one_or_none()
        return None if row is None else summary_from_row(row)


def _dead(state: lock.LockState, now: datetime, stale_after: timedelta) -> bool:
    host, pid = lock._host_and_pid(state.holder or "")
    if host == lock.socket.gethostname() and pid is not None and not lock._pid_alive(pid):
        return True
    return state.heartbeat is None or now - state.heartbeat > stale_after


def _work_record(row) -> WorkRecord:
    return WorkRecord(
        id=row["id"], deployment_id=row["deployment_id"], operation=row["operation"],
        status=row["status"], payload=row["payload"] or {}, sealed=row["sealed"],
        callback_url=row["callback_url"], claimed_by=row["claimed_by"],
        heartbeat=_utc(row["heartbeat"]), attempts=row["attempts"], error=row["error"],
        created_at=_utc(row["created_at"]), updated_at=_utc(row["updated_at"]))

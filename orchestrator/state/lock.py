"""The per-deployment lock: who holds it, whether that holder is dead, and the atomic
compare-and-set statements that take, refresh and release it.

A holder is ``host:pid:token``. A lock is recoverable when its holder ran on this host and
that pid is gone, or when its heartbeat is older than ``ORCHESTRATOR_LOCK_STALE_S``
(default 120 s). Taking a lock is always one conditional UPDATE whose WHERE clause names the
state it expects (free, or held by the very holder and heartbeat that were judged dead), so
two processes can never both win."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from orchestrator.errors import StateLockedError
from orchestrator.state.models import deployments

DEFAULT_STALE_S = 120.0


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def stale_after() -> timedelta:
    raw = os.environ.get("ORCHESTRATOR_LOCK_STALE_S", "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_STALE_S
    except ValueError:
        raise ValueError(f"ORCHESTRATOR_LOCK_STALE_S must be a number of seconds, not {raw!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class LockState:
    """The lock columns of one deployment row as read."""
    name: str
    holder: str | None
    heartbeat: datetime | None
    since: datetime | None


def read(session: Session, deployment_id: str, as_utc) -> LockState | None:
    row = session.execute(
        select(deployments.c.name, deployments.c.lock_holder, deployments.c.lock_heartbeat,
               deployments.c.lock_acquired_at).where(deployments.c.id == deployment_id)
    ).one_or_none()
    if row is None:
        return None
    return LockState(row.name, row.lock_holder, as_utc(row.lock_heartbeat),
                     as_utc(row.lock_acquired_at))


def why_dead(state: LockState, now: datetime) -> str | None:
    """Why the holder of ``state`` is taken for dead, or None while it may be alive."""
    host, pid = _host_and_pid(state.holder or "")
    if host == socket.gethostname() and pid is not None and not _pid_alive(pid):
        return f"process {pid} on {host} is gone"
    if state.heartbeat is None or now - state.heartbeat > stale_after():
        seen = state.heartbeat.isoformat(timespec="seconds") if state.heartbeat else "never"
        return f"no heartbeat since {seen}"
    return None


def _host_and_pid(holder: str) -> tuple[str | None, int | None]:
    parts = holder.split(":")
    if len(parts) < 2 or not parts[1].isdigit():
        return None, None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a process we can judge; leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """True when ``pid`` has exited but nobody has reaped it yet (Linux): it holds nothing.
    (A server killed with its worker process leaves the worker a zombie until its new
    parent reaps it, and some container init processes never do.)"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def take(session: Session, deployment_id: str, holder: str, now: datetime,
         expected: LockState | None) -> bool:
    """Set the lock to ``holder`` if it is free (``expected`` None) or still exactly as
    ``expected`` was read (same holder, same heartbeat). True when this call won."""
    if expected is None:
        condition = deployments.c.lock_holder.is_(None)
    else:
        heartbeat = deployments.c.lock_heartbeat
        condition = and_(
            deployments.c.lock_holder == expected.holder,
            heartbeat.is_(None) if expected.heartbeat is None else heartbeat == expected.heartbeat,
        )
    result = session.execute(
        update(deployments)
        .where(deployments.c.id == deployment_id, condition)
        .values(lock_holder=holder, lock_heartbeat=now, lock_acquired_at=now)
    )
    return result.rowcount == 1


def refresh(session: Session, deployment_id: str, holder: str, now: datetime) -> bool:
    result = session.execute(
        update(deployments)
        .where(deployments.c.id == deployment_id, deployments.c.lock_holder == holder)
        .values(lock_heartbeat=now)
    )
    return result.rowcount == 1


def clear(session: Session, deployment_id: str, holder: str) -> bool:
    result = session.execute(
        update(deployments)
        .where(deployments.c.id == deployment_id, deployments.c.lock_holder == holder)
        .values(lock_holder=None, lock_heartbeat=None, lock_acquired_at=None)
    )
    return result.rowcount == 1


def locked_error(deployment_id: str, state: LockState) -> StateLockedError:
    since = state.since or state.heartbeat
    when = since.isoformat(timespec="seconds") if since else "an unknown time"
    error = StateLockedError(
        f"deployment '{state.name}' is locked by {state.holder} since {when}")
    error.deployment_id = deployment_id
    error.holder = state.holder
    error.since = since
    return error

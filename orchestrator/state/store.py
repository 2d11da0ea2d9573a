"""The state store: deployments, their cloud resources, an event log, and a lock per
deployment, in SQLite (the default) or PostgreSQL (a shared service).

Thread-safe: one engine per store, a short transaction per call, records out (never ORM
objects or sessions). Opening a store migrates its database to the current schema."""
from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import StateLockedError
from orchestrator.state import db, lock
from orchestrator.state.models import deployments, events, resources
from orchestrator.state.queue import WorkQueue
from orchestrator.state.records import (
    DEPLOYMENT_STATUSES,
    EVENT_LEVELS,
    RESOURCE_KINDS,
    DeploymentRecord,
    EventRecord,
    ResourceRecord,
    deployment_from_row,
    resource_from_row,
)
from orchestrator.state.records import as_utc as _utc
from orchestrator.state.records import utc_now as _now
from orchestrator.state.tenancy import Tenancy

DEPLOYMENT_FIELDS = frozenset({"status", "status_reason", "outputs", "inputs", "template_text",
                               "template_path", "plan", "sites", "sealed_outputs"})
RESOURCE_FIELDS = frozenset({"site", "provider_id", "status", "attributes", "spec"})



class Store(WorkQueue, Tenancy):
    """``Store()`` opens ``$ORCHESTRATOR_DB`` or the per-user SQLite file;
    ``Store("sqlite:///path")`` or ``Store("postgresql://user:pw@host/db")`` a given one."""

    def __init__(self, url: str | None = None):
        resolved = db.resolve_url(url)
        self.url: str = db.masked(resolved)
        self._engine = db.create(resolved)
        try:
            db.migrate(self._engine)
        except Exception:
            self._engine.dispose()
            raise
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._upserts: dict = {}
        self._insert_event = None
        # SQLite has one writer at a time: threads of this process take turns in Python
        # instead of spinning on SQLite's busy timeout (an in-memory database is also one
        # shared connection). Other processes still coordinate through SQLite's own locks.
        self._one_at_a_time = threading.RLock() if resolved.get_backend_name() == "sqlite" \
            else None
        self._memory = db.is_memory(resolved)
        # SQLite file reads that a thread repeats many times a second (the polled status, on
        # the server's event loop) keep their connection: a pool checkout and check-in cost
        # more than the read. One per thread, closed with the store.
        self._kept: dict[int, object] = {}
        self._kept_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def in_memory(self) -> bool:
        """True for an in-memory SQLite database, which no other process can open."""
        return self._memory

    @property
    def reads_never_wait(self) -> bool:
        """True for an SQLite file: a read is a local page read of a fraction of a millisecond
        that never waits for the writer (WAL) or a network, so an event loop may do it itself
        (handing it to a thread costs more than the read)."""
        return self._one_at_a_time is not None and not self._memory

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept = list(self._kept.values()), {}
        for connection in kept:
            connection.close()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        if self._one_at_a_time is None:
            with self._sessions.begin() as session:
                yield session
            return
        with self._one_at_a_time, self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def _reading(self, keep: bool = False) -> Iterator:
        """A connection for reads. SQLite in WAL mode lets readers run beside the writer, so
        reads of a database file skip the writers' turn-taking lock (an in-memory database,
        one shared connection, still takes it). ``keep``: this thread's kept connection, for
        a read repeated all the time on an SQLite file (elsewhere the pool's). Each read ends
        its transaction, so the next one sees every commit made since."""
        if self._memory:
            with self._one_at_a_time, self._engine.connect() as connection:
                yield connection
            return
        if keep and self.reads_never_wait:
            yield from self._kept_reading()
            return
        with self._engine.connect() as connection:
            yield connection

    def _kept_reading(self) -> Iterator:
        key = threading.get_ident()
        connection = self._kept.get(key)
        if connection is None:
            with self._kept_lock:
                connection = self._kept[key] = self._engine.connect()
        try:
            yield connection
        finally:
            connection.rollback()

    # deployments --------------------------------------------------------------------------

    def create_deployment(self, name: str, *, owner: str = "local", group: str | None = None,
                          template_path: str = "", template_text: str = "",
                          inputs: dict | None = None, sites: str | None = None
                          ) -> DeploymentRecord:
        if not name:
            raise ValueError("a deployment needs a name")
        now = _now()
        row = dict(id=uuid.uuid4().hex, name=name, owner=owner, group_name=group, status="new",
                   status_reason=None, template_path=template_path,
                   template_text=template_text, inputs=dict(inputs or {}), outputs={},
                   plan=None, sites=sites, serial=0, lock_holder=None, lock_heartbeat=None,
                   lock_acquired_at=None, created_at=now, updated_at=now)
        try:
            with self._transaction() as session:
                session.execute(insert(deployments).values(**row))
        except IntegrityError as exc:
            raise ValueError(f"a deployment named {name!r} already exists for owner {owner!r}; "
                             "choose another name or delete that one first") from exc
        return self._deployment_record(row)

    def get_deployment(self, name_or_id: str, owner: str | None = None
                       ) -> DeploymentRecord | None:
        """By id, else by name (within ``owner`` when given). A name that several owners use
        needs ``owner``: ValueError."""
        with self._reading() as connection:
            query = select(deployments).where(deployments.c.id == name_or_id)
            if owner is not None:
                query = query.where(deployments.c.owner == owner)
            row = connection.execute(query).mappings().one_or_none()
            if row is None:
                query = select(deployments).where(deployments.c.name == name_or_id)
                if owner is not None:
                    query = query.where(deployments.c.owner == owner)
                rows = connection.execute(query).mappings().all()
                if len(rows) > 1:
                    owners = ", ".join(sorted(r["owner"] for r in rows))
                    raise ValueError(f"deployment name {name_or_id!r} is used by several "
                                     f"owners ({owners}); name the owner")
                row = rows[0] if rows else None
        return None if row is None else self._deployment_record(row)

    def list_deployments(self, owner: str | None = None, group: str | None = None,
                         status: str | None = None) -> list[DeploymentRecord]:
        """Newest first."""
        query = select(deployments).order_by(deployments.c.created_at.desc(),
                                             deployments.c.id.desc())
        if owner is not None:
            query = query.where(deployments.c.owner == owner)
        if group is not None:
            query = query.where(deployments.c.group_name == group)
        if status is not None:
            query = query.where(deployments.c.status == status)
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [self._deployment_record(row) for row in rows]

    def update_deployment(self, deployment_id: str, **fields) -> DeploymentRecord:
        unknown = set(fields) - DEPLOYMENT_FIELDS
        if unknown:
            raise TypeError(f"update_deployment() cannot set {', '.join(sorted(unknown))}; "
                            f"settable: {', '.join(sorted(DEPLOYMENT_FIELDS))}")
        if "status" in fields and fields["status"] not in DEPLOYMENT_STATUSES:
            raise ValueError(f"unknown deployment status {fields['status']!r}; "
                             f"expected one of {', '.join(DEPLOYMENT_STATUSES)}")
        for key in ("inputs", "outputs"):
            if key in fields and fields[key] is None:
                fields[key] = {}
        with self._transaction() as session:
            result = session.execute(update(deployments)
                                     .where(deployments.c.id == deployment_id)
                                     .values(**fields, updated_at=_now()))
            if result.rowcount != 1:
                raise LookupError(f"no deployment with id {deployment_id!r}")
            row = session.execute(select(deployments)
                                  .where(deployments.c.id == deployment_id)).mappings().one()
        return self._deployment_record(row)

    def bump_serial(self, deployment_id: str) -> int:
        """Atomically ``serial += 1``; the new value. A plan records the serial it was made
        against, so a plan made before a bump is refused as stale."""
        with self._transaction() as session:
            result = session.execute(update(deployments)
                                     .where(deployments.c.id == deployment_id)
                                     .values(serial=deployments.c.serial + 1,
                                             updated_at=_now()))
            if result.rowcount != 1:
                raise LookupError(f"no deployment with id {deployment_id!r}")
            # Our UPDATE holds the row (PostgreSQL) or the database (SQLite) until commit.
            return session.execute(select(deployments.c.serial)
                                   .where(deployments.c.id == deployment_id)).scalar_one()

    def delete_deployment(self, deployment_id: str) -> None:
        """Removes the deployment with its resources and events (ON DELETE CASCADE)."""
        with self._transaction() as session:
            session.execute(delete(deployments).where(deployments.c.id == deployment_id))

    # resources ----------------------------------------------------------------------------

    def upsert_resource(self, deployment_id: str, node: str, index: int, kind: str,
                        **fields) -> ResourceRecord:
        """Insert the (deployment, node, index, kind) row or update the given fields of it, in
        one INSERT ... ON CONFLICT DO UPDATE (safe when threads race on the same key)."""
        unknown = set(fields) - RESOURCE_FIELDS
        if unknown:
            raise TypeError(f"upsert_resource() cannot set {', '.join(sorted(unknown))}; "
                            f"settable: {', '.join(sorted(RESOURCE_FIELDS))}")
        if kind not in RESOURCE_KINDS:
            raise ValueError(f"unknown resource kind {kind!r}; "
                             f"expected one of {', '.join(RESOURCE_KINDS)}")
        for key in ("attributes", "spec"):
            if key in fields and fields[key] is None:
                fields[key] = {}
        now = _now()
        key = dict(deployment_id=deployment_id, node=node, node_index=index, kind=kind)
        row = dict(site=None, provider_id=None, status="pending", attributes={}, spec={})
        row.update(fields)
        params = dict(id=uuid.uuid4().hex, **key, **row, created_at=now, updated_at=now)
        try:
            with self._transaction() as session:
                found = session.execute(self._upsert_statement(frozenset(fields)),
                                        params).mappings().one()
        except IntegrityError as exc:
            raise LookupError(f"no deployment with id {deployment_id!r}") from exc
        return self._resource_record(found)

    def _upsert_statement(self, fields: frozenset):
        """INSERT ... ON CONFLICT DO UPDATE (the given fields) RETURNING the row, built once
        per set of fields with bound parameters, so SQLAlchemy compiles it once."""
        statement = self._upserts.get(fields)
        if statement is None:
            insert_ = (postgresql_insert if self._engine.dialect.name == "postgresql"
                       else sqlite_insert)(resources)
            columns = ("id", "deployment_id", "node", "node_index", "kind", "site",
                       "provider_id", "status", "attributes", "spec", "created_at",
                       "updated_at")
            insert_ = insert_.values({c: bindparam(c, type_=resources.c[c].type)
                                      for c in columns})
            updates = {f: insert_.excluded[f] for f in sorted(fields)}
            updates["updated_at"] = insert_.excluded["updated_at"]
            statement = insert_.on_conflict_do_update(
                index_elements=["deployment_id", "node", "node_index", "kind"],
                set_=updates).returning(*resources.c)
            self._upserts[fields] = statement
        return statement

    def resources(self, deployment_id: str) -> list[ResourceRecord]:
        """Ordered by node, kind, index."""
        with self._reading() as connection:
            rows = connection.execute(
                select(resources).where(resources.c.deployment_id == deployment_id)
                .order_by(resources.c.node, resources.c.kind, resources.c.node_index)
            ).mappings().all()
        return [self._resource_record(row) for row in rows]

    def delete_resource(self, deployment_id: str, node: str, index: int, kind: str) -> None:
        with self._transaction() as session:
            session.execute(delete(resources).where(
                resources.c.deployment_id == deployment_id, resources.c.node == node,
                resources.c.node_index == index, resources.c.kind == kind))

    # events -------------------------------------------------------------------------------

    def add_event(self, deployment_id: str, kind: str, message: str, *,
                  step: str | None = None, level: str = "info", data: dict | None = None
                  ) -> EventRecord:
        """Append to the deployment's log. Callers mask secrets before they log them."""
        with self._transaction() as session:
            return self._add_event(session, deployment_id, kind, message, step=step,
                                   level=level, data=data)

    def _add_event(self, session: Session, deployment_id: str, kind: str, message: str, *,
                   step: str | None, level: str, data: dict | None) -> EventRecord:
        if level not in EVENT_LEVELS:
            raise ValueError(f"unknown event level {level!r}; "
                             f"expected one of {', '.join(EVENT_LEVELS)}")
        row = dict(deployment_id=deployment_id, ts=_now(), kind=kind, level=level, step=step,
                   message=message, data=dict(data or {}))
        if self._insert_event is None:
            self._insert_event = insert(events).values(
                {c: bindparam(c, type_=events.c[c].type) for c in row}).returning(events.c.id)
        try:
            event_id = session.execute(self._insert_event, row).scalar_one()
        except IntegrityError as exc:
            raise LookupError(f"no deployment with id {deployment_id!r}") from exc
        return EventRecord(id=int(event_id), **row)

    def events(self, deployment_id: str, since_id: int = 0, limit: int | None = None
               ) -> list[EventRecord]:
        """The log after ``since_id``, oldest first."""
        query = (select(events)
                 .where(events.c.deployment_id == deployment_id, events.c.id > since_id)
                 .order_by(events.c.id))
        if limit is not None:
            query = query.limit(limit)
        with self._reading() as connection:
            rows = connection.execute(query).mappings().all()
        return [EventRecord(id=int(r["id"]), deployment_id=r["deployment_id"], ts=_utc(r["ts"]),
                            kind=r["kind"], level=r["level"], step=r["step"],
                            message=r["message"], data=r["data"] or {}) for r in rows]

    # the per-deployment lock ------------------------------------------------------------

    def acquire_lock(self, deployment_id: str, holder: str | None = None) -> str:
        """Take the deployment's lock; the holder string. Raises StateLockedError while a live
        holder has it; takes over a dead holder's lock and logs 'lock-recovered'."""
        holder = holder or lock.new_holder()
        for _attempt in range(10):
            now = _now()
            with self._transaction() as session:
                if lock.take(session, deployment_id, holder, now, expected=None):
                    return holder
            with self._transaction() as session:
                state = lock.read(session, deployment_id, _utc)
            if state is None:
                raise LookupError(f"no deployment with id {deployment_id!r}")
            if state.holder is None:
                continue  # released between our two statements: try again
            if state.holder == holder:
                self.heartbeat(deployment_id, holder)
                return holder
            reason = lock.why_dead(state, now)
            if reason is None:
                raise lock.locked_error(deployment_id, state)
            with self._transaction() as session:
                if lock.take(session, deployment_id, holder, _now(), expected=state):
                    self._add_event(session, deployment_id, "lock-recovered",
                                    f"took over the lock of {state.holder}: {reason}",
                                    step=None, level="warning",
                                    data={"previous_holder": state.holder, "holder": holder,
                                          "reason": reason})
                    return holder
        raise StateLockedError(f"could not take the lock of deployment {deployment_id!r}: "
                               "it kept changing hands")

    def heartbeat(self, deployment_id: str, holder: str) -> None:
        """Refresh our lock's heartbeat; StateLockedError when we no longer hold it."""
        with self._transaction() as session:
            if lock.refresh(session, deployment_id, holder, _now()):
                return
            state = lock.read(session, deployment_id, _utc)
        if state is None:
            raise LookupError(f"no deployment with id {deployment_id!r}")
        raise StateLockedError(f"deployment '{state.name}' is no longer locked by {holder} "
                               f"(now held by {state.holder or 'nobody'})")

    def release_lock(self, deployment_id: str, holder: str) -> None:
        """Release the lock if ``holder`` has it; otherwise do nothing."""
        with self._transaction() as session:
            lock.clear(session, deployment_id, holder)

    @contextlib.contextmanager
    def locked(self, deployment_id: str, holder: str | None = None, *,
               heartbeat_s: float | None = None) -> Iterator[str]:
        """``with store.locked(id) as holder:`` holds the lock for the block, refreshing its
        heartbeat from a background thread (every quarter of the staleness limit unless
        ``heartbeat_s`` says otherwise; 0 turns it off)."""
        holder = self.acquire_lock(deployment_id, holder)
        interval = (lock.stale_after().total_seconds() / 4 if heartbeat_s is None
                    else heartbeat_s)
        stop = threading.Event()
        beater = None
        if interval > 0:
            beater = threading.Thread(target=self._beat, args=(deployment_id, holder, interval,
                                                                stop),
                                      name=f"lock-heartbeat-{deployment_id[:8]}", daemon=True)
            beater.start()
        try:
            yield holder
        finally:
            stop.set()
            if beater is not None:
                beater.join()
            self.release_lock(deployment_id, holder)

    def _beat(self, deployment_id: str, holder: str, interval: float,
              stop: threading.Event) -> None:
        while not stop.wait(interval):
            try:
                self.heartbeat(deployment_id, holder)
            except (StateLockedError, LookupError):
                return

    # rows to records (orchestrator.state.records) -----------------------------------------

    _deployment_record = staticmethod(deployment_from_row)
    _resource_record = staticmethod(resource_from_row)

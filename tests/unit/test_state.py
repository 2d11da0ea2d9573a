"""The state store against SQLite. ``TestStore`` holds the behaviour every backend must
show; tests/integration/test_state_postgres.py runs the same class against PostgreSQL by
giving it another ``store_url``. The module-level tests are SQLite's own."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from orchestrator.errors import StateLockedError
from orchestrator.state import DeploymentRecord, EventRecord, ResourceRecord, Store, db
from orchestrator.state.models import metadata
from tests.conftest import ROOT

# Acquires the lock named on its command line, prints the holder, and keeps the lock until
# its stdin closes; then releases it and exits.
HOLD_LOCK = """
import sys
from orchestrator.state import Store
store = Store(sys.argv[1])
holder = store.acquire_lock(sys.argv[2])
print(holder, flush=True)
sys.stdin.read()
store.release_lock(sys.argv[2], holder)
store.close()
"""


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'state.db'}"


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(db.resolve_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def run_threads(count: int, work) -> list:
    """Run ``work(i)`` in ``count`` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    return results


@contextlib.contextmanager
def lock_held_in_subprocess(url: str, deployment_id: str):
    """A child process holding the lock: yields (process, holder). Closing its stdin makes
    it release the lock and exit; the caller may kill it instead."""
    with subprocess.Popen([sys.executable, "-c", HOLD_LOCK, url, deployment_id],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            holder = proc.stdout.readline().strip()
            if not holder:
                pytest.fail(f"the lock-holding subprocess failed:\n{proc.stderr.read()}")
            yield proc, holder
        finally:
            if proc.poll() is None:
                proc.kill()


class TestStore:
    """What every backend must do."""

    @pytest.fixture
    def store(self, store_url):
        store = Store(store_url)
        yield store
        store.close()

    @pytest.fixture
    def dep(self, store):
        return store.create_deployment("web", template_path="t.yaml", template_text="x: 1",
                                       inputs={"size": 2})

    # schema ------------------------------------------------------------------------------

    def test_opening_migrates_a_fresh_database_to_head(self, store_url):
        assert current_revision(store_url) is None
        with Store(store_url):
            pass
        assert current_revision(store_url) == head_revision()
        engine = create_engine(db.resolve_url(store_url))
        try:
            assert {"deployments", "resources", "events", "alembic_version"} <= set(
                inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def test_reopening_keeps_data_and_migrates_nothing(self, store_url):
        with Store(store_url) as store:
            dep = store.create_deployment("keep")
        with Store(store_url) as store:
            assert store.get_deployment(dep.id) == dep
        assert current_revision(store_url) == head_revision()

    def test_migrations_build_exactly_the_models(self, store, store_url):
        engine = create_engine(db.resolve_url(store_url))
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, metadata) == []
        finally:
            engine.dispose()

    # deployments -------------------------------------------------------------------------

    def test_create_and_get_deployment(self, store, dep):
        assert isinstance(dep, DeploymentRecord)
        assert (dep.name, dep.owner, dep.status, dep.serial) == ("web", "local", "new", 0)
        assert dep.inputs == {"size": 2} and dep.outputs == {} and dep.plan is None
        assert len(dep.id) == 32 and dep.created_at.tzinfo is not None
        assert store.get_deployment(dep.id) == dep
        assert store.get_deployment("web") == dep
        assert store.get_deployment("web", owner="local") == dep
        assert store.get_deployment("web", owner="alice") is None
        assert store.get_deployment("nope") is None

    def test_name_is_unique_per_owner(self, store, dep):
        with pytest.raises(ValueError, match="'web' already exists for owner 'local'"):
            store.create_deployment("web")
        other = store.create_deployment("web", owner="alice")
        assert other.id != dep.id
        assert store.get_deployment("web", owner="alice") == other
        with pytest.raises(ValueError, match="several owners"):
            store.get_deployment("web")

    def test_list_deployments_newest_first_with_filters(self, store):
        a = store.create_deployment("a", group="hpc")
        b = store.create_deployment("b", owner="alice", group="hpc")
        c = store.create_deployment("c")
        store.update_deployment(c.id, status="deployed")
        assert [d.name for d in store.list_deployments()] == ["c", "b", "a"]
        assert [d.name for d in store.list_deployments(owner="local")] == ["c", "a"]
        assert [d.name for d in store.list_deployments(group="hpc")] == ["b", "a"]
        assert [d.id for d in store.list_deployments(status="deployed")] == [c.id]
        assert store.list_deployments(owner="local", group="hpc") == [
            store.get_deployment(a.id)]
        assert b.group == "hpc"

    def test_update_deployment(self, store, dep):
        plan = {"format_version": 1, "steps": [{"op": "+", "node": "vm"}]}
        updated = store.update_deployment(
            dep.id, status="deployed", status_reason="ok", outputs={"ip": "10.0.0.1"},
            inputs={"size": 3}, template_text="y: 2", template_path="u.yaml", plan=plan,
            sites="sites.yaml")
        assert updated.updated_at > dep.updated_at and updated.created_at == dep.created_at
        assert (updated.status, updated.status_reason, updated.sites) == (
            "deployed", "ok", "sites.yaml")
        assert updated.outputs == {"ip": "10.0.0.1"} and updated.inputs == {"size": 3}
        assert updated.plan == plan and updated.template_text == "y: 2"
        assert store.get_deployment(dep.id) == updated
        assert store.update_deployment(dep.id, plan=None).plan is None

    def test_update_deployment_refuses_bad_input(self, store, dep):
        with pytest.raises(TypeError, match="serial"):
            store.update_deployment(dep.id, serial=5)
        with pytest.raises(ValueError, match="unknown deployment status 'done'"):
            store.update_deployment(dep.id, status="done")
        with pytest.raises(LookupError):
            store.update_deployment("0" * 32, status="failed")

    def test_records_have_a_json_form(self, store, dep):
        store.upsert_resource(dep.id, "vm", 0, "compute")
        store.add_event(dep.id, "note", "hi")
        for record in (store.get_deployment(dep.id), store.resources(dep.id)[0],
                       store.events(dep.id)[0]):
            as_dict = json.loads(json.dumps(record.to_dict()))
            for key in ("created_at", "ts"):
                if key in as_dict:
                    assert datetime.fromisoformat(as_dict[key]).tzinfo is not None

    def test_bump_serial_is_atomic_under_threads(self, store, dep):
        values = run_threads(20, lambda i: [store.bump_serial(dep.id) for _ in range(5)])
        assert sorted(v for vs in values for v in vs) == list(range(1, 101))
        assert store.get_deployment(dep.id).serial == 100

    def test_delete_deployment_cascades(self, store, dep):
        other = store.create_deployment("other")
        for d in (dep, other):
            store.upsert_resource(d.id, "vm", 0, "compute")
            store.add_event(d.id, "note", "hi")
        store.delete_deployment(dep.id)
        assert store.get_deployment(dep.id) is None
        assert store.resources(dep.id) == [] and store.events(dep.id) == []
        assert len(store.resources(other.id)) == 1 and len(store.events(other.id)) == 1

    # resources ---------------------------------------------------------------------------

    def test_upsert_inserts_then_updates_given_fields(self, store, dep):
        first = store.upsert_resource(dep.id, "vm", 0, "compute", site="cnaf",
                                      status="creating", spec={"flavor": "m1"})
        assert isinstance(first, ResourceRecord)
        assert (first.node, first.index, first.kind, first.site) == ("vm", 0, "compute", "cnaf")
        assert first.attributes == {} and first.spec == {"flavor": "m1"}
        second = store.upsert_resource(dep.id, "vm", 0, "compute", provider_id="uuid-1",
                                       status="active", attributes={"ip": "10.0.0.5"})
        assert second.id == first.id and second.created_at == first.created_at
        assert (second.site, second.provider_id, second.status) == ("cnaf", "uuid-1", "active")
        assert second.spec == {"flavor": "m1"} and second.attributes == {"ip": "10.0.0.5"}
        assert store.resources(dep.id) == [second]

    def test_resources_ordered_by_node_kind_index(self, store, dep):
        for node, index, kind in [("vm", 1, "compute"), ("db", 0, "software"),
                                  ("vm", 0, "volume"), ("vm", 0, "compute"),
                                  ("db", 0, "compute"), ("vm", 10, "compute")]:
            store.upsert_resource(dep.id, node, index, kind)
        assert [(r.node, r.kind, r.index) for r in store.resources(dep.id)] == [
            ("db", "compute", 0), ("db", "software", 0), ("vm", "compute", 0),
            ("vm", "compute", 1), ("vm", "compute", 10), ("vm", "volume", 0)]

    def test_delete_resource(self, store, dep):
        store.upsert_resource(dep.id, "vm", 0, "compute")
        store.upsert_resource(dep.id, "vm", 1, "compute")
        store.delete_resource(dep.id, "vm", 0, "compute")
        assert [r.index for r in store.resources(dep.id)] == [1]

    def test_upsert_refuses_bad_input(self, store, dep):
        with pytest.raises(ValueError, match="unknown resource kind 'vm'"):
            store.upsert_resource(dep.id, "vm", 0, "vm")
        with pytest.raises(TypeError, match="colour"):
            store.upsert_resource(dep.id, "vm", 0, "compute", colour="red")
        with pytest.raises(LookupError):
            store.upsert_resource("0" * 32, "vm", 0, "compute")

    def test_concurrent_upserts_of_one_key_leave_one_row(self, store, dep):
        records = run_threads(20, lambda i: store.upsert_resource(
            dep.id, "vm", 0, "compute", status=f"s{i}", attributes={"writer": i}))
        rows = store.resources(dep.id)
        assert len(rows) == 1
        assert {r.id for r in records} == {rows[0].id}
        assert rows[0].attributes == {"writer": int(rows[0].status[1:])}

    # events ------------------------------------------------------------------------------

    def test_events_append_and_page(self, store, dep):
        added = [store.add_event(dep.id, "step-started", f"step {i}", step=f"s{i}",
                                 data={"i": i}) for i in range(5)]
        warn = store.add_event(dep.id, "retry", "again", level="warning")
        assert isinstance(warn, EventRecord) and warn.level == "warning" and warn.data == {}
        assert [e.id for e in added] == sorted(e.id for e in added)
        assert store.events(dep.id) == [*added, warn]
        assert store.events(dep.id, since_id=added[2].id) == [added[3], added[4], warn]
        assert store.events(dep.id, since_id=added[0].id, limit=2) == added[1:3]
        assert added[0].ts.tzinfo is not None and added[0].data == {"i": 0}
        with pytest.raises(ValueError, match="level"):
            store.add_event(dep.id, "x", "y", level="loud")
        with pytest.raises(LookupError):
            store.add_event("0" * 32, "x", "y")

    # the lock ----------------------------------------------------------------------------

    def test_lock_acquire_release(self, store, dep):
        holder = store.acquire_lock(dep.id)
        _host, pid, token = holder.split(":")
        assert (int(pid), len(token)) == (os.getpid(), 8)
        record = store.get_deployment(dep.id)
        assert record.lock_holder == holder and record.lock_heartbeat is not None
        with pytest.raises(StateLockedError, match=f"deployment 'web' is locked by {holder} "
                                                   "since "):
            store.acquire_lock(dep.id)
        store.release_lock(dep.id, "someone-else:1:x")  # not theirs: nothing happens
        assert store.get_deployment(dep.id).lock_holder == holder
        store.release_lock(dep.id, holder)
        assert store.get_deployment(dep.id).lock_holder is None
        assert store.acquire_lock(dep.id, "me:1:abc") == "me:1:abc"
        with pytest.raises(LookupError):
            store.acquire_lock("0" * 32)

    def test_heartbeat_refreshes_and_notices_a_lost_lock(self, store, dep, monkeypatch):
        holder = store.acquire_lock(dep.id, "elsewhere:1:aaaa")
        before = store.get_deployment(dep.id).lock_heartbeat
        store.heartbeat(dep.id, holder)
        assert store.get_deployment(dep.id).lock_heartbeat > before
        monkeypatch.setenv("ORCHESTRATOR_LOCK_STALE_S", "0")
        store.acquire_lock(dep.id, "thief:2:bbbb")
        with pytest.raises(StateLockedError, match="no longer locked by elsewhere:1:aaaa"):
            store.heartbeat(dep.id, holder)

    def test_stale_heartbeat_lock_is_recovered(self, store, dep, monkeypatch):
        store.acquire_lock(dep.id, "otherhost:4242:cafe0000")
        with pytest.raises(StateLockedError, match="otherhost:4242:cafe0000"):
            store.acquire_lock(dep.id)  # alive as far as we can tell: fresh heartbeat
        monkeypatch.setenv("ORCHESTRATOR_LOCK_STALE_S", "0")
        holder = store.acquire_lock(dep.id)
        assert store.get_deployment(dep.id).lock_holder == holder
        [event] = store.events(dep.id)
        assert (event.kind, event.level) == ("lock-recovered", "warning")
        assert "otherhost:4242:cafe0000" in event.message and "no heartbeat" in event.message
        assert event.data["previous_holder"] == "otherhost:4242:cafe0000"

    def test_locked_context_heartbeats_and_releases(self, store, dep):
        with store.locked(dep.id, heartbeat_s=0.02) as holder:
            first = store.get_deployment(dep.id).lock_heartbeat
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while store.get_deployment(dep.id).lock_heartbeat == first:
                assert datetime.now(UTC) < deadline, "no heartbeat came"
            assert store.get_deployment(dep.id).lock_holder == holder
        assert store.get_deployment(dep.id).lock_holder is None
        with pytest.raises(RuntimeError), store.locked(dep.id, heartbeat_s=0):
            raise RuntimeError("step failed")
        assert store.get_deployment(dep.id).lock_holder is None

    def test_concurrent_acquires_have_one_winner(self, store, dep):
        def try_lock(i):
            try:
                return store.acquire_lock(dep.id, f"host:{i}:{i:08x}")
            except StateLockedError:
                return None

        winners = [h for h in run_threads(20, try_lock) if h]
        assert len(winners) == 1
        assert store.get_deployment(dep.id).lock_holder == winners[0]

    def test_lock_contention_between_processes(self, store, store_url, dep):
        with lock_held_in_subprocess(store_url, dep.id) as (proc, holder):
            assert holder.split(":")[1] == str(proc.pid)
            with pytest.raises(StateLockedError, match=f"locked by {holder}"):
                store.acquire_lock(dep.id)
            proc.stdin.close()  # the holder releases and exits
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        mine = store.acquire_lock(dep.id)
        assert store.get_deployment(dep.id).lock_holder == mine
        assert store.events(dep.id) == []  # released, not recovered

    def test_lock_of_a_killed_process_is_recovered(self, store, store_url, dep):
        with lock_held_in_subprocess(store_url, dep.id) as (proc, holder):
            with pytest.raises(StateLockedError):
                store.acquire_lock(dep.id)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        assert store.get_deployment(dep.id).lock_holder == holder  # never released
        mine = store.acquire_lock(dep.id)
        assert store.get_deployment(dep.id).lock_holder == mine
        [event] = store.events(dep.id)
        assert event.kind == "lock-recovered"
        assert holder in event.message and f"process {proc.pid}" in event.message


# SQLite's own ----------------------------------------------------------------------------

def test_default_location_honours_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCHESTRATOR_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with Store() as store:
        path = tmp_path / "data" / "orchestrator" / "state.db"
        assert store.url == f"sqlite:///{path}"
    assert path.is_file()


def test_default_location_without_xdg_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCHESTRATOR_DB", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert db.default_url() == f"sqlite:///{tmp_path}/.local/share/orchestrator/state.db"


def test_orchestrator_db_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("ORCHESTRATOR_DB", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Store() as store:
        store.create_deployment("x")
    assert (tmp_path / "elsewhere.db").is_file()
    assert not (tmp_path / "data").exists()
    monkeypatch.setenv("ORCHESTRATOR_DB", str(tmp_path / "plain" / "path.db"))
    with Store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'plain' / 'path.db'}"


def test_sqlite_settings(tmp_path):
    path = tmp_path / "state.db"
    with Store(f"sqlite:///{path}") as store, store._engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persistent
    raw.close()


def test_status_summary_sees_every_commit_and_its_kept_connection_closes(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with Store(url) as store, Store(url) as other:  # other: another connection's commits
        dep = store.create_deployment("polled")
        first = store.deployment_summary(dep.id)
        assert (first.status, first.pending_work) == ("new", 0)
        other.enqueue_work(dep.id, "deploy")
        other.enqueue_work(dep.id, "delete")
        assert store.deployment_summary(dep.id).pending_work == 2
        claimed = other.claim_work("w1")
        assert store.deployment_summary(dep.id).pending_work == 2  # running still counts
        other.finish_work(claimed.id, "w1")
        other.update_deployment(dep.id, status="deployed", outputs={"url": "http://x"})
        now = store.deployment_summary(dep.id)
        assert (now.status, now.outputs, now.pending_work) == ("deployed", {"url": "http://x"}, 1)
        assert store.deployment_summary("nope") is None
        # a second thread reads with a connection of its own
        assert run_threads(2, lambda i: store.deployment_summary(dep.id).status) == \
            ["deployed", "deployed"]
        assert store._engine.pool.checkedout() == 3  # kept: this thread's and the two others'
    assert store._engine.pool.checkedout() == 0


def test_a_claim_writes_its_work_started_event_in_the_same_transaction(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        dep = store.create_deployment("claimed")
        queued = store.enqueue_work(dep.id, "deploy")
        claimed = store.claim_work("host:1:w")
        assert (claimed.id, claimed.attempts, claimed.status) == (queued.id, 1, "running")
        started = [e for e in store.events(dep.id) if e.kind == "work-started"]
        assert [e.data for e in started] == [{"work": queued.id, "worker": "host:1:w",
                                              "attempt": 1}]
        assert store.claim_work("host:2:w") is None  # nothing else queued: no event either
        assert len([e for e in store.events(dep.id) if e.kind == "work-started"]) == 1


def test_in_memory_database_is_shared_between_threads():
    with Store("sqlite://") as store:
        dep = store.create_deployment("m")
        run_threads(5, lambda i: store.add_event(dep.id, "n", str(i)))
        assert len(store.events(dep.id)) == 5


def test_urls_map_to_the_driver_and_mask_passwords():
    url = db.resolve_url("postgresql://orch:s3cret@db.example.org:5432/state")
    assert url.drivername in ("postgresql+psycopg", "postgresql+psycopg2")
    assert "s3cret" not in db.masked(url) and "***" in db.masked(url)
    assert db.resolve_url("postgresql+psycopg2://u@h/d").drivername == "postgresql+psycopg2"
    with pytest.raises(ValueError, match="unsupported state database"):
        db.resolve_url("mysql://u@h/d")


def test_concurrent_first_opens_of_a_fresh_file_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    stores = run_threads(8, lambda i: Store(url))
    for store in stores:
        store.close()
    assert current_revision(url) == head_revision()

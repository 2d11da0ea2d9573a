"""Opening a state database: where it lives, the engine, SQLite's settings, migrations.

``ORCHESTRATOR_DB`` (a URL, or a plain path to an SQLite file) overrides the default
``$XDG_DATA_HOME/orchestrator/state.db``; PostgreSQL URLs are mapped to the installed driver
(psycopg 3, else psycopg2)."""
from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant shared by every orchestrator process: serialises concurrent migrations.
PG_MIGRATION_LOCK_KEY = 0x6F726368  # "orch"


def default_url() -> str:
    """``$ORCHESTRATOR_DB`` if set, else the SQLite file under ``$XDG_DATA_HOME``."""
    configured = os.environ.get("ORCHESTRATOR_DB", "").strip()
    if configured:
        return configured if "://" in configured else _sqlite_url(Path(configured))
    data_home = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return _sqlite_url(base / "orchestrator" / "state.db")


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.expanduser().resolve()}"


def resolve_url(url: str | None) -> URL:
    """The URL to connect to, with ``postgresql://`` mapped to the installed driver."""
    parsed = make_url(url or default_url())
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=f"postgresql+{_postgres_driver()}")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported state database {parsed.render_as_string()!r}: "
                         "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB")
    return parsed


def _postgres_driver() -> str:
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return driver
    raise ValueError("a PostgreSQL state database needs a driver: "
                     "pip install 'tosca-orchestrator[postgres]'")


def masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create(url: URL) -> Engine:
    """One engine per store; its pool hands each thread its own connection."""
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if is_memory(url):
        # One shared connection, so every thread sees the same in-memory database.
        engine = create_engine(url, poolclass=StaticPool,
                               connect_args={"check_same_thread": False})
    else:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Readers do not take turns (WAL): room for a connection per request thread (the
        # server's thread pool has 40) besides the engine's writers, which take turns.
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                               pool_size=48, max_overflow=32, pool_timeout=60)
    event.listen(engine, "connect", _sqlite_settings)
    return engine


def _sqlite_settings(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _write_ahead_log(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _write_ahead_log(cursor) -> None:
    """WAL mode, a lasting property of the file that its first connection sets. Switching
    needs the file to itself, and while another connection is in a transaction on a fresh
    file (processes opening it at once, one of them migrating it), SQLite answers "database
    is locked" at once instead of waiting out the busy timeout: wait here instead."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.2)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head, holding a database-wide lock so that processes opening a
    fresh database at once do not race; at head it changes nothing."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # The write lock up front: a second process waits here, then finds head.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": PG_MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()

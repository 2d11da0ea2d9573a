"""A PostgreSQL server for the tests that need one (import ``postgres_server`` into a test
module to use it).

Where it comes from, in order:
1. ``$ORCHESTRATOR_TEST_PG_URL`` (``postgresql://user:password@host:port/db``): a server
   you run; the tests work in a schema of their own and drop it afterwards.
2. PostgreSQL's server programs (``initdb``, ``pg_ctl``: on PATH, or Debian's
   ``/usr/lib/postgresql/N/bin``; ``.ci/postgres.sh`` installs them): a throwaway cluster in
   a temporary folder, listening on 127.0.0.1 on a free port (its socket in that folder),
   stopped and removed at the end of the session. PostgreSQL refuses to run as root, so as
   root the cluster is owned by and run as the ``postgres`` user (else ``nobody``).
3. Neither: the tests skip, saying what is missing, or fail when ``$CI`` is set.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV_URL = "ORCHESTRATOR_TEST_PG_URL"


@dataclass
class PostgresServer:
    """A server the tests may create schemas in; ``url`` connects to its test database."""
    url: str
    _schemas: list[str] = field(default_factory=list)

    def _admin(self):
        from sqlalchemy import create_engine

        from orchestrator.state.db import resolve_url

        return create_engine(resolve_url(self.url), isolation_level="AUTOCOMMIT")

    def new_schema_url(self) -> str:
        """A URL whose connections work in a fresh, empty schema: a clean database for one
        test, even on a server where we may not create databases."""
        from sqlalchemy.engine import make_url

        schema = f"test_{uuid.uuid4().hex[:12]}"
        engine = self._admin()
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        finally:
            engine.dispose()
        self._schemas.append(schema)
        url = make_url(self.url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def drop_schemas(self) -> None:
        engine = self._admin()
        try:
            with engine.connect() as connection:
                while self._schemas:
                    connection.exec_driver_sql(
                        f'DROP SCHEMA IF EXISTS "{self._schemas.pop()}" CASCADE')
        finally:
            engine.dispose()


def _unavailable(reason: str):
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")


def find_server_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH first, then the newest Debian install."""
    on_path = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if all(on_path):
        return Path(os.path.realpath(on_path[0])).parent
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                       key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                       else 0, reverse=True)
    for folder in installed:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayCluster:
    """initdb + pg_ctl in a temporary folder; as root, run as an unprivileged user."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.as_user: dict = {}
        if os.geteuid() == 0:
            account = _unprivileged_account()
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.as_user = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])

    def _run(self, *args: str, timeout: float = 120) -> None:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "HOME": str(self.root)}
        result = subprocess.run([str(self.bindir / args[0]), *args[1:]], check=False, cwd=self.root,
                                env=env, capture_output=True, text=True, timeout=timeout,
                                **self.as_user)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}{tail}")

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(3):  # a free port can be taken between finding and binding it
            self.port = _free_port()
            options = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                          "-o", options, "-w", "-t", "60", "start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        base = f"postgresql://postgres@127.0.0.1:{self.port}"
        admin = PostgresServer(f"{base}/postgres")._admin()
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql("CREATE DATABASE orchestrator_test")
        finally:
            admin.dispose()
        return f"{base}/orchestrator_test"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_account() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists "
                       "to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgresServer for the whole session (see the module's docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            _unavailable("no PostgreSQL driver: pip install 'psycopg[binary]'")
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        server = PostgresServer(url)
        try:
            server.drop_schemas()  # connects: a wrong URL fails here, once, plainly
        except Exception as exc:  # noqa: BLE001 - any driver error means the same
            pytest.fail(f"${ENV_URL} ({url.split('@')[-1]}) cannot be reached: {exc}",
                        pytrace=False)
        yield server
        server.drop_schemas()
        return
    bindir = find_server_bin()
    if bindir is None:
        _unavailable(f"${ENV_URL} is not set and PostgreSQL's server programs (initdb, "
                     "pg_ctl) are not installed: run .ci/postgres.sh or apt-get install "
                     "postgresql")
    cluster = ThrowawayCluster(bindir)
    try:
        server = PostgresServer(cluster.start())
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        cluster.stop()
        _unavailable(f"could not start a throwaway cluster with {bindir}: {exc}")
    try:
        yield server
    finally:
        cluster.stop()

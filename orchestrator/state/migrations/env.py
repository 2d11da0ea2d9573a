"""Alembic environment of the state store.

``orchestrator.state.db.migrate`` runs this with an open connection in
``config.attributes["connection"]`` (no alembic.ini at run time). For hand use,
``sqlalchemy.url`` in the config is honoured instead, and offline mode prints SQL."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from orchestrator.state.models import metadata

config = context.config


def _configure(**kwargs) -> None:
    context.configure(target_metadata=metadata, compare_type=True, **kwargs)


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _run_on(connection)
            connection.commit()
        engine.dispose()
    else:
        _run_on(connection)


def _run_on(connection) -> None:
    # Batch mode lets later migrations ALTER tables on SQLite (copy-and-move).
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

"""The schema as SQLAlchemy Core tables. Migrations (``migrations/versions``) create exactly
this; ``tests/unit/test_state.py`` checks that the two agree.

Column names avoid SQL keywords (``group_name``, ``node_index``) so the tables read
plainly in ``psql`` and ``sqlite3``."""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _timestamp(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


deployments = Table(
    "deployments", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("group_name", String(255), nullable=True),
    Column("status", String(32), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("template_path", Text, nullable=False),
    Column("template_text", Text, nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("outputs", JSON, nullable=False),  # secret outputs masked: their values are in
    Column("sealed_outputs", Text, nullable=True),  # sealed (never opened by the store)
    Column("plan", JSON(none_as_null=True), nullable=True),
    Column("sites", Text, nullable=True),
    Column("serial", Integer, nullable=False),
    Column("lock_holder", String(255), nullable=True),
    _timestamp("lock_heartbeat", nullable=True),
    _timestamp("lock_acquired_at", nullable=True),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    UniqueConstraint("owner", "name"),
    Index(None, "owner", "group_name"),
)

resources = Table(
    "resources", metadata,
    Column("id", String(32), primary_key=True),
    Column("deployment_id", String(32), ForeignKey("deployments.id", ondelete="CASCADE"),
           nullable=False),
    Column("node", String(255), nullable=False),
    Column("node_index", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("site", String(255), nullable=True),
    Column("provider_id", String(255), nullable=True),
    Column("status", String(32), nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("spec", JSON, nullable=False),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    UniqueConstraint("deployment_id", "node", "node_index", "kind"),
)

events = Table(
    "events", metadata,
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("deployment_id", String(32), ForeignKey("deployments.id", ondelete="CASCADE"),
           nullable=False),
    _timestamp("ts"),
    Column("kind", String(64), nullable=False),
    Column("level", String(16), nullable=False),
    Column("step", String(255), nullable=True),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Index(None, "deployment_id", "id"),
)

# The service's work queue: one row per requested operation (deploy, update, delete), claimed
# by one worker at a time (row locks on PostgreSQL, compare-and-set everywhere), kept after it
# finishes as the record of who ran it and how often it was attempted.
work = Table(
    "work", metadata,
    Column("id", String(32), primary_key=True),
    Column("deployment_id", String(32), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("sealed", Text, nullable=True),  # encrypted secrets (secret inputs), or NULL
    Column("callback_url", Text, nullable=True),
    Column("claimed_by", String(255), nullable=True),
    _timestamp("heartbeat", nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    Index(None, "status", "created_at"),
    Index(None, "deployment_id"),
)

# Long-lived API tokens (for CI): only a SHA-256 of the token is stored.
api_tokens = Table(
    "api_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("groups", JSON, nullable=False),
    Column("admin", Integer, nullable=False),
    _timestamp("created_at"),
    _timestamp("expires_at", nullable=True),
    _timestamp("last_used_at", nullable=True),
    UniqueConstraint("token_hash"),
    Index(None, "owner"),
)

# Users' cloud credentials per site, encrypted with the server's key.
credentials = Table(
    "credentials", metadata,
    Column("owner", String(255), primary_key=True),
    Column("site", String(255), primary_key=True),
    Column("sealed", Text, nullable=False),
    _timestamp("updated_at"),
)

# A deployment's SSH key pair, sealed by the service (the store never sees it in clear), so
# that any replica can reach the deployment's servers.
deployment_keys = Table(
    "deployment_keys", metadata,
    Column("deployment_id", String(32), ForeignKey("deployments.id", ondelete="CASCADE"),
           primary_key=True),
    Column("sealed", Text, nullable=False),
    _timestamp("created_at"),
)

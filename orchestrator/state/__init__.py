"""The state store: deployments, their cloud resources, an event log and a per-deployment
lock, in SQLite by default or PostgreSQL for a shared service.

``Store`` is imported on first use, so code that only needs the record types does not load
SQLAlchemy and Alembic."""
from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.state.records import (
    DEPLOYMENT_STATUSES,
    RESOURCE_KINDS,
    DeploymentRecord,
    EventRecord,
    ResourceRecord,
)

if TYPE_CHECKING:
    from orchestrator.state.store import Store

__all__ = ["DEPLOYMENT_STATUSES", "RESOURCE_KINDS", "DeploymentRecord", "EventRecord",
           "ResourceRecord", "Store"]


def __getattr__(name: str):
    if name == "Store":
        from orchestrator.state.store import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The values the state store hands out: frozen dataclasses, never ORM objects or sessions.

Every timestamp is a timezone-aware UTC datetime; ``to_dict()`` gives the JSON form
(ISO 8601 timestamps) that the CLI's ``--json`` view and the REST API share."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DEPLOYMENT_STATUSES = (
    "new", "planned", "deploying", "deployed", "failed", "deleting", "deleted", "updating",
)
RESOURCE_KINDS = ("compute", "volume", "network", "port", "attachment", "software")
EVENT_LEVELS = ("debug", "info", "warning", "error")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form: plain types, ISO 8601 timestamps."""
        return {name: _jsonable(getattr(self, name)) for name in _field_names(type(self))}


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class DeploymentRecord(_Record):
    id: str
    name: str
    owner: str
    group: str | None
    status: str
    status_reason: str | None
    template_path: str
    template_text: str
    inputs: dict
    outputs: dict
    plan: dict | None
    sites: str | None
    serial: int
    lock_holder: str | None
    lock_heartbeat: datetime | None
    created_at: datetime
    updated_at: datetime
    lock_acquired_at: datetime | None = None


@dataclass(frozen=True)
class DeploymentSummary(_Record):
    """What a status read needs of a deployment (no plan, template or lock columns) and how
    many operations on it are queued or running; one cheap query (``Store.deployment_summary``)."""
    id: str
    name: str
    owner: str
    group: str | None
    status: str
    status_reason: str | None
    inputs: dict
    outputs: dict
    serial: int
    created_at: datetime
    updated_at: datetime
    pending_work: int


@dataclass(frozen=True)
class ResourceRecord(_Record):
    id: str
    deployment_id: str
    node: str
    index: int
    kind: str
    site: str | None
    provider_id: str | None
    status: str
    attributes: dict
    spec: dict
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class EventRecord(_Record):
    id: int
    deployment_id: str
    ts: datetime
    kind: str
    level: str
    step: str | None
    message: str
    data: dict = field(default_factory=dict)


WORK_OPERATIONS = ("deploy", "update", "delete")
WORK_STATUSES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class WorkRecord(_Record):
    """One requested operation on a deployment, as the service's work queue holds it.
    ``sealed`` is the encrypted form of its secrets (never decrypted by the store)."""
    id: str
    deployment_id: str
    operation: str
    status: str
    payload: dict
    sealed: str | None
    callback_url: str | None
    claimed_by: str | None
    heartbeat: datetime | None
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApiTokenRecord(_Record):
    """A long-lived API token; only its SHA-256 is stored."""
    id: str
    name: str
    owner: str
    groups: tuple
    admin: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


# -- rows of the tables to records --------------------------------------------------------------

def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def deployment_from_row(row) -> DeploymentRecord:
    return DeploymentRecord(
        id=row["id"], name=row["name"], owner=row["owner"], group=row["group_name"],
        status=row["status"], status_reason=row["status_reason"],
        template_path=row["template_path"], template_text=row["template_text"],
        inputs=row["inputs"] or {}, outputs=row["outputs"] or {}, plan=row["plan"],
        sites=row["sites"], serial=row["serial"], lock_holder=row["lock_holder"],
        lock_heartbeat=as_utc(row["lock_heartbeat"]), created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]), lock_acquired_at=as_utc(row["lock_acquired_at"]))


def resource_from_row(row) -> ResourceRecord:
    return ResourceRecord(
        id=row["id"], deployment_id=row["deployment_id"], node=row["node"],
        index=row["node_index"], kind=row["kind"], site=row["site"],
        provider_id=row["provider_id"], status=row["status"],
        attributes=row["attributes"] or {}, spec=row["spec"] or {},
        created_at=as_utc(row["created_at"]), updated_at=as_utc(row["updated_at"]))


def summary_from_row(row) -> DeploymentSummary:
    return DeploymentSummary(
        id=row["id"], name=row["name"], owner=row["owner"], group=row["group_name"],
        status=row["status"], status_reason=row["status_reason"],
        inputs=row["inputs"] or {}, outputs=row["outputs"] or {}, serial=row["serial"],
        created_at=as_utc(row["created_at"]), updated_at=as_utc(row["updated_at"]),
        pending_work=int(row["pending_work"]))

"""Who may use the service, mixed into ``Store``: long-lived API tokens (stored as SHA-256
hashes, never in clear), users' cloud credentials per site and deployments' SSH keys (both
stored sealed: the caller encrypts them; the store never sees them in clear)."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.state.models import api_tokens, credentials, deployment_keys, deployments
from orchestrator.state.records import ApiTokenRecord
from orchestrator.state.records import as_utc as _utc
from orchestrator.state.records import utc_now as _now

# How stale ``last_used_at`` may get: a token used on every request is written once a minute,
# not once a request (a write per read would make every authenticated GET a writer).
LAST_USED_RESOLUTION = timedelta(seconds=60)



def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Tenancy:
    """Methods of ``Store`` (they use its ``_transaction``)."""

    # API tokens -----------------------------------------------------------------------------

    def add_api_token(self, token: str, *, name: str, owner: str, groups=(), admin=False,
                      expires_at: datetime | None = None) -> ApiTokenRecord:
        row = dict(id=uuid.uuid4().hex, token_hash=token_hash(token), name=name, owner=owner,
                   groups=list(groups), admin=1 if admin else 0, created_at=_now(),
                   expires_at=expires_at, last_used_at=None)
        with self._transaction() as session:
            session.execute(insert(api_tokens).values(**row))
        return _token_record(row)

    def api_token(self, token: str) -> ApiTokenRecord | None:
        """The record of ``token`` if it exists and has not expired; notes its use."""
        digest = token_hash(token)
        with self._reading() as connection:
            row = connection.execute(select(api_tokens).where(
                api_tokens.c.token_hash == digest)).mappings().one_or_none()
        now = _now()
        if row is None or (row["expires_at"] is not None and _utc(row["expires_at"]) <= now):
            return None
        last_used = _utc(row["last_used_at"])
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
            with self._transaction() as session:
                session.execute(update(api_tokens).where(api_tokens.c.id == row["id"])
                                .values(last_used_at=now))
        return _token_record(row)

    def api_tokens(self, owner: str) -> list[ApiTokenRecord]:
        with self._reading() as connection:
            rows = connection.execute(select(api_tokens).where(api_tokens.c.owner == owner)
                                   .order_by(api_tokens.c.created_at)).mappings().all()
        return [_token_record(row) for row in rows]

    def delete_api_token(self, token_id: str, owner: str | None = None) -> bool:
        query = delete(api_tokens).where(api_tokens.c.id == token_id)
        if owner is not None:
            query = query.where(api_tokens.c.owner == owner)
        with self._transaction() as session:
            return session.execute(query).rowcount == 1

    # credentials ----------------------------------------------------------------------------

    def put_credentials(self, owner: str, site: str, sealed: str) -> None:
        with self._transaction() as session:
            key = (credentials.c.owner == owner) & (credentials.c.site == site)
            if session.execute(update(credentials).where(key).values(
                    sealed=sealed, updated_at=_now())).rowcount == 0:
                session.execute(insert(credentials).values(owner=owner, site=site,
                                                           sealed=sealed, updated_at=_now()))

    def sealed_credentials(self, owner: str) -> dict[str, str]:
        """{site: sealed credentials} of ``owner``."""
        with self._reading() as connection:
            rows = connection.execute(select(credentials.c.site, credentials.c.sealed)
                                   .where(credentials.c.owner == owner)).all()
        return {row.site: row.sealed for row in rows}

    def credential_sites(self, owner: str) -> list[dict]:
        with self._reading() as connection:
            rows = connection.execute(select(credentials.c.site, credentials.c.updated_at)
                                   .where(credentials.c.owner == owner)
                                   .order_by(credentials.c.site)).all()
        return [{"site": r.site, "updated_at": _utc(r.updated_at).isoformat()} for r in rows]

    def delete_credentials(self, owner: str, site: str) -> bool:
        with self._transaction() as session:
            return session.execute(delete(credentials).where(
                credentials.c.owner == owner, credentials.c.site == site)).rowcount == 1

    # deployments' SSH keys ------------------------------------------------------------------

    def sealed_deployment_key(self, deployment_id: str) -> str | None:
        with self._reading() as connection:
            return connection.execute(select(deployment_keys.c.sealed).where(
                deployment_keys.c.deployment_id == deployment_id)).scalar_one_or_none()

    def sealed_outputs(self, deployment_id: str) -> str | None:
        """The deployment's secret outputs, sealed (``orchestrator.sealing``), or None."""
        with self._reading() as connection:
            return connection.execute(select(deployments.c.sealed_outputs).where(
                deployments.c.id == deployment_id)).scalar_one_or_none()

    def put_deployment_key(self, deployment_id: str, sealed: str) -> str:
        """Store the deployment's sealed key unless one is stored already (two replicas
        making a key at once: the first one stored wins); the stored one."""
        try:
            with self._transaction() as session:
                session.execute(insert(deployment_keys).values(
                    deployment_id=deployment_id, sealed=sealed, created_at=_now()))
            return sealed
        except IntegrityError:
            stored = self.sealed_deployment_key(deployment_id)
            if stored is None:  # not a duplicate: the deployment is gone
                raise LookupError(f"no deployment with id {deployment_id!r}") from None
            return stored


def _token_record(row) -> ApiTokenRecord:
    return ApiTokenRecord(
        id=row["id"], name=row["name"], owner=row["owner"], groups=tuple(row["groups"] or ()),
        admin=bool(row["admin"]), created_at=_utc(row["created_at"]),
        expires_at=_utc(row["expires_at"]), last_used_at=_utc(row["last_used_at"]))

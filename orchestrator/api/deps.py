"""What every route needs: the service context (settings, store, authenticator, sealer) and
the authenticated caller. A dashboard router mounted on the same app uses the same ones."""
from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from orchestrator.api.auth import Authenticator, AuthError, Principal
from orchestrator.api.problems import forbidden, not_found, unauthorized
from orchestrator.api.sealing import Sealer
from orchestrator.api.settings import ServiceSettings

bearer = HTTPBearer(auto_error=False, description="An OpenID Connect access token of a "
                    "trusted issuer, or an API token (orch_...) made with POST /v1/tokens")


@dataclass
class ServiceContext:
    settings: ServiceSettings
    store: object
    authenticator: Authenticator
    sealer: Sealer
    workers: object = None
    cache: dict = field(default_factory=dict)


async def context(request: Request) -> ServiceContext:
    """The service context (async: FastAPI runs a sync dependency in its thread pool, a
    thread hop for a plain attribute read)."""
    return request.app.state.orchestrator


async def principal(request: Request, credentials: HTTPAuthorizationCredentials | None
                    = Depends(bearer)) -> Principal:
    """The authenticated caller. A token verified moments ago is answered on the event loop;
    anything that needs checking (a JWKS fetch, a signature, an API token lookup) runs in
    the thread pool."""
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else \
        request.headers.get("authorization")
    authenticator = request.app.state.orchestrator.authenticator
    found = authenticator.remembered(header)
    if found is not None:
        return found
    try:
        return await run_in_threadpool(authenticator.authenticate, header)
    except AuthError as exc:
        raise unauthorized(str(exc)) from exc


def visible_deployment(ctx: ServiceContext, who: Principal, deployment_id: str):
    """The deployment if ``who`` may see it; 404 otherwise (another user's deployment is
    indistinguishable from a missing one)."""
    try:
        record = ctx.store.get_deployment(deployment_id)
    except ValueError:
        record = None
    if record is None or record.id != deployment_id or not who.can_see(record.owner,
                                                                       record.group):
        raise not_found(f"no deployment with id {deployment_id!r}")
    return record


def visible_summary(ctx: ServiceContext, who: Principal, deployment_id: str):
    """The status columns of the deployment (``DeploymentSummary``, one query) if ``who``
    may see it; 404 otherwise."""
    summary = ctx.store.deployment_summary(deployment_id)
    if summary is None or not who.can_see(summary.owner, summary.group):
        raise not_found(f"no deployment with id {deployment_id!r}")
    return summary


def require_group(who: Principal, group: str | None) -> None:
    """A deployment ``who`` makes may name a group of theirs (of their own issuer, or
    qualified ``ISSUER#group`` by it); administrators may name any."""
    if group is not None and not who.admin and not who.in_group(group):
        raise forbidden(f"you are not a member of group {group!r}")

"""The caller's own things: long-lived API tokens for CI, and cloud credentials per site
(stored sealed with the server's key; never returned, only which sites have some)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.auth import new_api_token
from orchestrator.api.deps import ServiceContext, context, principal
from orchestrator.api.problems import Problem, forbidden, not_found

router = APIRouter(prefix="/v1", tags=["account"])
SITE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=255)
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class CredentialsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credentials: dict[str, str] = Field(..., min_length=1,
                                        description="merged over the site's own credential "
                                        "references when your deployments run there")


def _token_view(record) -> dict:
    data = record.to_dict()
    data["groups"] = list(data["groups"])
    return data


@router.post("/tokens", status_code=201,
             summary="Make an API token (shown once) carrying your identity, for CI")
def create_token(body: TokenRequest, ctx: ServiceContext = Depends(context),
                 who=Depends(principal)) -> dict:
    if who.via != "oidc":
        raise forbidden("API tokens are made with an OpenID Connect token, not another "
                        "API token")
    token = new_api_token()
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) \
        if body.expires_in_days else None
    record = ctx.store.add_api_token(token, name=body.name, owner=who.owner,
                                     groups=sorted(who.groups), admin=who.admin,
                                     expires_at=expires)
    return _token_view(record) | {"token": token}


@router.get("/tokens")
def list_tokens(ctx: ServiceContext = Depends(context), who=Depends(principal)) -> list[dict]:
    return [_token_view(r) for r in ctx.store.api_tokens(who.owner)]


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: str, ctx: ServiceContext = Depends(context),
                 who=Depends(principal)) -> None:
    if not ctx.store.delete_api_token(token_id, owner=who.owner):
        raise not_found(f"no API token with id {token_id!r}")


@router.get("/credentials", summary="The sites you stored credentials for (never the values)")
def list_credentials(ctx: ServiceContext = Depends(context),
                     who=Depends(principal)) -> list[dict]:
    return ctx.store.credential_sites(who.owner)


@router.put("/credentials/{site}", status_code=204)
def put_credentials(body: CredentialsRequest, site: str = Path(..., pattern=SITE),
                    ctx: ServiceContext = Depends(context), who=Depends(principal)) -> None:
    from orchestrator import service

    if site not in service.orchestrator(sites=ctx.settings.sites).catalogue.sites:
        raise Problem(404, "unknown-site", "No such site", f"no site named {site!r}")
    ctx.store.put_credentials(who.owner, site, ctx.sealer.seal(body.credentials))


@router.delete("/credentials/{site}", status_code=204)
def delete_credentials(site: str = Path(..., pattern=SITE),
                       ctx: ServiceContext = Depends(context), who=Depends(principal)) -> None:
    if not ctx.store.delete_credentials(who.owner, site):
        raise not_found(f"no credentials stored for site {site!r}")

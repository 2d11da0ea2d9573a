"""The web dashboard served by ``orchestrator serve`` beside the REST API: OpenID Connect
sign-in (authorization code + PKCE), the template catalogue, deployment forms generated from
template inputs, the deployments with live progress, outputs, logs and actions.

Server-rendered (Jinja2) with a little hand-written JavaScript; nothing is fetched from
elsewhere at run time. ``create_router()`` gives the router to mount on the API's app::

    app = create_app(settings, routers=[create_router()])
"""
from __future__ import annotations

PREFIX = "/ui"


def create_router():
    """The dashboard's routes under /ui (and a redirect from / to it)."""
    from fastapi import APIRouter
    from fastapi.responses import RedirectResponse

    from orchestrator.dashboard import oidc, pages

    router = APIRouter(include_in_schema=False)

    @router.get("/", name="dashboard_root")
    def root():
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    router.include_router(oidc.router)
    router.include_router(pages.router)
    return router


__all__ = ["PREFIX", "create_router"]

"""The route clients poll, ``GET /v1/deployments/{id}``, answered before FastAPI's routing.

Dashboards, the remote CLI and CI pipelines ask for a deployment's status again and again;
on a small machine FastAPI's routing, dependency injection and middleware stack cost more
CPU than the read itself. This ASGI wrapper answers the common case directly, with the very
functions the route uses: the caller's token must be one the authenticator verified moments
ago (``Authenticator.remembered``), the database an SQLite file (reads that never wait), and
the deployment one the caller may see (``deps.visible_summary``). Every other request, and
every other outcome of this one (unknown token, API token, 404, a query string), goes to the
application unchanged, so errors, auth and the problem documents stay in one place."""
from __future__ import annotations

from starlette.responses import JSONResponse

from orchestrator.api.deps import visible_summary
from orchestrator.api.routes.views import summary_response

PREFIX = "/v1/deployments/"


class PollingFastPath:
    """Put in front of an app whose store's reads never wait (``served`` decides)."""

    def __init__(self, app, ctx):
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope, receive, send):
        response = self._answer(scope) if scope["type"] == "http" else None
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _answer(self, scope) -> JSONResponse | None:
        path = scope["path"]
        if scope["method"] != "GET" or not path.startswith(PREFIX) or scope["query_string"]:
            return None
        deployment_id = path[len(PREFIX):]
        if not deployment_id or "/" in deployment_id:
            return None
        authorization = next((value for name, value in scope["headers"]
                              if name == b"authorization"), None)
        if authorization is None:
            return None
        who = self.ctx.authenticator.remembered(authorization.decode("latin-1"))
        if who is None:
            return None
        try:
            summary = visible_summary(self.ctx, who, deployment_id)
        except Exception:  # noqa: BLE001 - a 404 (or anything else): the app answers it
            return None
        return summary_response(summary)

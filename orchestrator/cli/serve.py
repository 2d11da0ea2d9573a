"""``orchestrator serve``: the REST API (and its background workers) on uvicorn."""
from __future__ import annotations

import click

from orchestrator.cli.main import cli


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ORCHESTRATOR_HOST")
@click.option("--port", default=8080, show_default=True, type=int, envvar="ORCHESTRATOR_PORT")
@click.option("--issuer", "issuers", multiple=True, metavar="URL",
              help="A trusted OpenID Connect issuer (repeatable; env ORCHESTRATOR_OIDC_ISSUERS).")
@click.option("--audience", metavar="AUD", help="The audience tokens must carry "
              "(env ORCHESTRATOR_OIDC_AUDIENCE).")
@click.option("--admin-group", "admin_groups", multiple=True, metavar="GROUP",
              help="Members of GROUP are administrators (env ORCHESTRATOR_ADMIN_GROUPS).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker threads running deployments (env ORCHESTRATOR_WORKERS, default 4; "
              "0 accepts work for other replicas).")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True,
              envvar="ORCHESTRATOR_DASHBOARD",
              help="Serve the web dashboard at /ui (/ redirects to it).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve(ctx, host, port, issuers, audience, admin_groups, workers, dashboard, log_level):
    """Serve the REST API (OpenAPI at /docs and /openapi.json) and the web dashboard (/ui).
    State in --db (SQLite by default; PostgreSQL for several replicas), sites from --sites."""
    try:
        import uvicorn

        from orchestrator.api.app import create_app
        from orchestrator.api.settings import ServiceSettings
    except ImportError as exc:  # pragma: no cover - the service extra is missing
        raise click.ClickException("the service needs FastAPI and uvicorn: pip install "
                                   f"'tosca-orchestrator[service]' ({exc})") from exc
    settings = ServiceSettings.from_env(
        db=ctx.obj.get("db"), sites=ctx.obj.get("sites"), issuers=tuple(issuers) or None,
        audience=audience, admin_groups=frozenset(admin_groups) or None, workers=workers,
        step_timeout_s=ctx.obj.get("step_timeout"))
    if not settings.issuers:
        raise click.UsageError("no OpenID Connect issuer: pass --issuer URL or set "
                               "ORCHESTRATOR_OIDC_ISSUERS")
    routers = []
    if dashboard:
        from orchestrator.dashboard import create_router

        routers.append(create_router())
    uvicorn.run(create_app(settings, routers=routers), host=host, port=port,
                log_level=log_level, access_log=log_level == "debug")

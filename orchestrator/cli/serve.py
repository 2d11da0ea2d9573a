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
@click.option("--admin-group", "admin_groups", multiple=True, metavar="[ISSUER#]GROUP",
              help="Members of GROUP of ISSUER are administrators (env "
              "ORCHESTRATOR_ADMIN_GROUPS); a plain GROUP only when one issuer is trusted.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker threads running deployments (env ORCHESTRATOR_WORKERS, default 4; "
              "0 accepts work for other replicas).")
@click.option("--api-workers", type=click.IntRange(min=1), default=1, show_default=True,
              envvar="ORCHESTRATOR_API_WORKERS",
              help="Processes serving HTTP requests on the same port (more CPUs, more "
              "requests per second; needs a database file or PostgreSQL).")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True,
              envvar="ORCHESTRATOR_DASHBOARD",
              help="Serve the web dashboard at /ui (/ redirects to it).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve(ctx, host, port, issuers, audience, admin_groups, workers, api_workers, dashboard,
          log_level):
    """Serve the REST API (OpenAPI at /docs and /openapi.json) and the web dashboard (/ui).
    State in --db (SQLite by default; PostgreSQL for several replicas), sites from --sites."""
    try:
        import uvicorn

        from orchestrator.api.app import create_app, served
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
    from orchestrator.api.auth import admin_claims

    try:
        admin_claims(settings.issuers, settings.admin_groups | settings.admin_subjects)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _server_logging(log_level)
    options = dict(host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    if api_workers > 1:
        _serve_processes(settings, api_workers, dashboard, options)
        return
    routers = []
    if dashboard:
        from orchestrator.dashboard import create_router

        routers.append(create_router())
    uvicorn.run(served(create_app(settings, routers=routers)), **options)


def _server_logging(level: str) -> None:
    """A server's own records (an engine step's internal error with its traceback, for one)
    go to stderr beside uvicorn's, at the server's log level."""
    import logging

    logger = logging.getLogger("orchestrator")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:  [%(name)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def _serve_processes(settings, api_workers: int, dashboard: bool, options: dict) -> None:
    """``api_workers`` uvicorn processes share the listening socket; this process supervises
    them (restarting one that dies) and runs the background workers, once for all of them."""
    import os

    import uvicorn

    from orchestrator.api.app import build_context, settings_environ
    from orchestrator.api.sealing import install_redaction
    from orchestrator.api.workers import WorkerPool

    install_redaction("uvicorn", "uvicorn.error")
    ctx = build_context(settings)  # migrates the database and makes the key file, once
    if ctx.store.in_memory:
        ctx.store.close()
        raise click.UsageError("--api-workers above 1 needs a database the processes can "
                               "share: an SQLite file or PostgreSQL, not an in-memory one")
    os.environ.update(settings_environ(settings, dashboard))
    pool = WorkerPool(ctx) if settings.workers > 0 else None
    if pool is not None:
        pool.start()
    try:
        uvicorn.run("orchestrator.api.app:create_app_from_environ", factory=True,
                    workers=api_workers, **options)
    finally:
        if pool is not None:
            pool.stop()
        ctx.store.close()

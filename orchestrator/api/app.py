"""The application factory: ``create_app(settings)`` wires the store, the authenticator,
the sealer, the problem+json handlers, the /v1 routers and (unless told not to) the
background workers, which start and stop with the app's lifespan.

Another front end served by the same app adds its router afterwards::

    app = create_app(settings)
    app.include_router(dashboard_router)   # its routes use orchestrator.api.deps

or passes ``routers=[...]`` here."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os

from fastapi import FastAPI

from orchestrator import __version__, service
from orchestrator.api import problems
from orchestrator.api.auth import Authenticator, OIDCVerifier
from orchestrator.api.deps import ServiceContext
from orchestrator.api.sealing import Sealer, install_redaction
from orchestrator.api.settings import ServiceSettings

log = logging.getLogger("orchestrator.api")
# How `orchestrator serve --api-workers N` hands its settings to the API processes that
# uvicorn spawns. They inherit the server's environment; the secret key is left out of this
# variable and read again from ORCHESTRATOR_SECRET_KEY (or the key file), where it came from.
SETTINGS_ENV = "ORCHESTRATOR_SERVE_SETTINGS"
DASHBOARD_ENV = "ORCHESTRATOR_SERVE_DASHBOARD"


def build_context(settings: ServiceSettings) -> ServiceContext:
    store = service.open_store(settings.db)
    verifier = OIDCVerifier(settings.issuers, settings.audience,
                            groups_claims=settings.groups_claims,
                            admin_groups=settings.admin_groups,
                            admin_subjects=settings.admin_subjects)
    sealer = Sealer.from_settings(settings.secret_key, service.data_dir() / "server.key")
    return ServiceContext(settings=settings, store=store,
                          authenticator=Authenticator(verifier, store), sealer=sealer)


def create_app(settings: ServiceSettings | None = None, *, start_workers: bool = True,
               routers=()) -> FastAPI:
    from orchestrator.api.routes import account, catalogue, deployments, progress
    from orchestrator.api.workers import WorkerPool

    settings = settings or ServiceSettings.from_env()
    ctx = build_context(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        install_redaction("uvicorn", "uvicorn.error", "uvicorn.access")
        # What is alive now (modules, the app, the routes) lives as long as the process:
        # keep it out of the cyclic collector's generations, so that collections during
        # requests are short.
        gc.collect()
        gc.freeze()
        if start_workers and settings.workers > 0:
            ctx.workers = WorkerPool(ctx)
            ctx.workers.start()
        try:
            yield
        finally:
            if ctx.workers is not None:
                ctx.workers.stop()
            ctx.store.close()

    app = FastAPI(title="TOSCA orchestrator", version=__version__, lifespan=lifespan,
                  description="Deploy TOSCA templates on research infrastructures. Every "
                  "route but /health and /version needs a bearer token. Errors are RFC 9457 "
                  "problem details (application/problem+json).")
    app.state.orchestrator = ctx
    problems.install(app)
    for router in (catalogue.router, deployments.router, progress.router, account.router,
                   *routers):
        app.include_router(router)
    return app


def create_app_from_environ() -> FastAPI:
    """The app of one of several API processes (``orchestrator serve --api-workers N``):
    settings from ``ORCHESTRATOR_SERVE_SETTINGS``; the server process, not this one, runs
    the background workers."""
    settings = ServiceSettings.from_json(os.environ[SETTINGS_ENV])
    settings = dataclasses.replace(
        settings, secret_key=os.environ.get("ORCHESTRATOR_SECRET_KEY") or None)
    routers = []
    if os.environ.get(DASHBOARD_ENV) == "1":
        from orchestrator.dashboard import create_router

        routers.append(create_router())
    return served(create_app(settings, start_workers=False, routers=routers))


def settings_environ(settings: ServiceSettings, dashboard: bool) -> dict[str, str]:
    """The variables :func:`create_app_from_environ` reads (no secret key in them)."""
    return {SETTINGS_ENV: dataclasses.replace(settings, secret_key=None).to_json(),
            DASHBOARD_ENV: "1" if dashboard else "0"}


def served(app: FastAPI):
    """The ASGI application a server runs: on an SQLite file, ``app`` behind the fast path of
    the route clients poll (see :mod:`orchestrator.api.polling`); otherwise ``app`` itself
    (PostgreSQL reads go to a thread, which only the app's route does)."""
    from orchestrator.api.polling import PollingFastPath

    ctx = app.state.orchestrator
    return PollingFastPath(app, ctx) if ctx.store.reads_never_wait else app

"""The REST API of ``orchestrator serve`` (FastAPI): /v1 routes over orchestrator.service,
OpenID Connect bearer authentication, background workers, problem+json errors.

``create_app(settings)`` builds the application; other front ends served by the same app (a
dashboard) add their routers to it and reuse ``orchestrator.api.auth``."""
from __future__ import annotations


def create_app(settings=None, **kwargs):
    from orchestrator.api.app import create_app as _create_app

    return _create_app(settings, **kwargs)


__all__ = ["create_app"]

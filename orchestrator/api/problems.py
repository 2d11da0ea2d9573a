"""The one place where errors become RFC 9457 problem details (application/problem+json).

Routes raise ``Problem`` (or let an OrchestratorError through); request validation errors,
HTTP errors and anything unexpected are mapped here too. No traceback reaches a client."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator import errors

PROBLEM_TYPE = "https://orchestrator.example.org/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("orchestrator.api")


class Problem(Exception):
    """An error with an HTTP status; ``code`` names its type (``.../problems/<code>``)."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None,
                 headers: dict | None = None, **extensions):
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.headers = headers or {}
        self.extensions = extensions


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not found", what)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Authentication required", detail,
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail)


# (exception class, status, code, title): the first match wins, so subclasses come first
_ORCHESTRATOR_ERRORS = (
    (errors.TemplateError, 422, "invalid-template", "The template is invalid"),
    (errors.PlacementError, 422, "placement-failed", "No site can host the deployment"),
    (errors.StateLockedError, 409, "deployment-locked", "The deployment is busy"),
    (errors.StalePlanError, 409, "stale-plan", "The plan is stale"),
    (errors.ProviderError, 502, "provider-error", "A cloud provider call failed"),
    (errors.ContextualizationError, 502, "contextualization-error", "Configuration failed"),
    (errors.OrchestratorError, 400, "orchestrator-error", "The request cannot be done"),
)


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body = {"type": PROBLEM_TYPE + problem.code, "title": problem.title,
            "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    body.update(problem.extensions)
    return JSONResponse(body, status_code=problem.status, headers=problem.headers,
                        media_type=MEDIA_TYPE)


def from_orchestrator_error(exc: errors.OrchestratorError) -> Problem:
    for cls, status, code, title in _ORCHESTRATOR_ERRORS:
        if isinstance(exc, cls):
            extensions = {}
            diagnostics = getattr(exc, "diagnostics", None)
            if diagnostics is not None and len(diagnostics):
                extensions["diagnostics"] = [d.to_dict() for d in diagnostics.sorted()]
            return Problem(status, code, title, str(exc), **extensions)
    raise AssertionError("unreachable: OrchestratorError is the last entry")


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc, request.url.path)

    @app.exception_handler(errors.OrchestratorError)
    async def _orchestrator(request: Request, exc: errors.OrchestratorError):
        return problem_response(from_orchestrator_error(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        issues = [{"location": [str(p) for p in e.get("loc", ())], "message": e.get("msg", "")}
                  for e in exc.errors()]
        return problem_response(Problem(422, "invalid-request", "The request is invalid",
                                        "; ".join(f"{'/'.join(i['location'])}: {i['message']}"
                                                  for i in issues), errors=issues),
                                request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(Problem(exc.status_code, code, str(exc.detail),
                                        headers=dict(exc.headers or {})), request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("internal error on %s %s: %s: %s", request.method, request.url.path,
                  type(exc).__name__, exc)
        return problem_response(Problem(500, "internal-error", "Internal server error",
                                        "the server failed; the error was logged"),
                                request.url.path)

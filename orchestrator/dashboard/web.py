"""What every dashboard page needs: the Jinja2 environment, the signed-in session, the
redirect to sign in, CSRF checks on form posts and the static files."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from orchestrator import __version__
from orchestrator.dashboard.session import SESSION_COOKIE, Session

PREFIX = "/ui"
PACKAGE = Path(__file__).resolve().parent
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PACKAGE / "templates")),
                             autoescape=jinja2.select_autoescape(["html"]),
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.globals.update(prefix=PREFIX, version=__version__, static=static_url)
    return env


def static_url(name: str) -> str:
    """The URL of a static file, with its modification time so browsers refetch changes."""
    path = PACKAGE / "static" / name
    stamp = int(path.stat().st_mtime) if path.exists() else 0
    return f"{PREFIX}/static/{name}?v={stamp}"


def render(template: str, request: Request, status: int = 200, /, *,
           session: Session | None = None, **values) -> HTMLResponse:
    html = environment().get_template(template).render(
        request=request, session=session, who=session.who if session else None,
        csrf=session.csrf if session else "", path=request.url.path, **values)
    return HTMLResponse(html, status_code=status,
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


def current_session(request: Request) -> Session | None:
    return Session.from_cookie(request.app.state.orchestrator,
                               request.cookies.get(SESSION_COOKIE))


def safe_next(value: str | None) -> str:
    """Only a path of the dashboard itself (no open redirect)."""
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/"


def signin_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/signin?next={quote(target, safe='')}", status_code=303)


async def form_data(request: Request) -> dict[str, list[str]]:
    """A urlencoded form body (the dashboard's forms never upload files)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=True)


async def signed_in_form(request: Request):
    """``(session, form)`` for a POST from a signed-in user's page, or the response to
    send instead (to sign in, or 403 when the form's CSRF token does not match)."""
    session = current_session(request)
    if session is None:
        return signin_redirect(request), None
    form = await form_data(request)
    if not session.csrf_ok(first(form, "csrf")):
        return render("error.html", request, 403, session=session, title="Forbidden",
                      message="The form was not sent from this dashboard; reload it."), None
    return session, form


def first(form: dict[str, list[str]], key: str, default: str = "") -> str:
    values = form.get(key)
    return values[0] if values else default


def static_file(name: str) -> Response:
    path = (PACKAGE / "static" / name).resolve()
    if path.parent != (PACKAGE / "static").resolve() or not path.is_file() or \
            path.suffix not in STATIC_TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})


def env_flag(name: str, default: bool = True) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in ("0", "false", "no", "")

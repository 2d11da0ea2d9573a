"""Signing in to the dashboard with OpenID Connect: the authorization-code flow with PKCE
(S256), ``state`` against cross-site request forgery and ``nonce`` against replayed ID
tokens, at one of the issuers the service trusts. The ID token is verified like the API's
bearer tokens (issuer, signature from the JWKS, expiry) with the dashboard's client id as
audience; the session then keeps who the user is, not the tokens.

- ``ORCHESTRATOR_DASHBOARD_CLIENT_ID``: the dashboard's client id at the issuers (default:
  the API audience, else ``orchestrator``);
- ``ORCHESTRATOR_DASHBOARD_CLIENT_SECRET``: its secret, for a confidential client (sent with
  HTTP basic auth);
- ``ORCHESTRATOR_DASHBOARD_SCOPES``: the scopes asked for (default ``openid profile email``);
- ``ORCHESTRATOR_PUBLIC_URL``: the service's external URL, for the redirect URI behind a proxy.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import urllib.error
import urllib.request
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from orchestrator.api.auth import AuthError
from orchestrator.dashboard import web
from orchestrator.dashboard.session import (
    LOGIN_COOKIE,
    LOGIN_TTL_S,
    SESSION_COOKIE,
    Session,
    cookie_options,
    seal,
    unseal,
)

router = APIRouter(prefix=web.PREFIX, include_in_schema=False)


class SignInError(Exception):
    """The sign-in could not be completed; the message is safe to show."""


def client_id(ctx) -> str:
    return os.environ.get("ORCHESTRATOR_DASHBOARD_CLIENT_ID") or ctx.settings.audience or \
        "orchestrator"


def redirect_uri(request: Request) -> str:
    public = os.environ.get("ORCHESTRATOR_PUBLIC_URL") or request.app.state.orchestrator \
        .settings.public_url
    if public:
        return public.rstrip("/") + f"{web.PREFIX}/callback"
    return str(request.url_for("dashboard_callback"))


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) as RFC 7636 defines them."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@router.get("/signin", name="dashboard_signin")
def signin(request: Request, next: str | None = None):
    ctx = request.app.state.orchestrator
    return web.render("signin.html", request, issuers=list(enumerate(ctx.settings.issuers)),
                      next=web.safe_next(next))


@router.get("/login", name="dashboard_login")
def login(request: Request, issuer: int = 0, next: str | None = None):
    """Send the browser to the issuer's authorization endpoint."""
    ctx = request.app.state.orchestrator
    if not 0 <= issuer < len(ctx.settings.issuers):
        return web.render("error.html", request, 400, title="Unknown issuer",
                          message="Choose one of the listed identity providers.")
    url = ctx.settings.issuers[issuer]
    try:
        endpoint = ctx.authenticator.verifier.discovery(url)["authorization_endpoint"]
    except (AuthError, KeyError) as exc:
        return web.render("error.html", request, 502, title="Sign-in is unavailable",
                          message=f"The identity provider cannot be reached: {exc}")
    verifier, challenge = pkce_pair()
    pending = {"issuer": url, "state": secrets.token_urlsafe(24),
               "nonce": secrets.token_urlsafe(24), "verifier": verifier,
               "next": web.safe_next(next)}
    query = urlencode({"response_type": "code", "client_id": client_id(ctx),
                       "redirect_uri": redirect_uri(request), "scope": _scopes(),
                       "state": pending["state"], "nonce": pending["nonce"],
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    response = RedirectResponse(f"{endpoint}?{query}", status_code=303)
    response.set_cookie(LOGIN_COOKIE, seal(ctx, pending), max_age=LOGIN_TTL_S,
                        **cookie_options(request))
    return response


def _scopes() -> str:
    return os.environ.get("ORCHESTRATOR_DASHBOARD_SCOPES") or "openid profile email"


@router.get("/callback", name="dashboard_callback")
def callback(request: Request, code: str | None = None, state: str | None = None,
             error: str | None = None, error_description: str | None = None):
    """The issuer's redirect back: check state, exchange the code (with the PKCE verifier),
    verify the ID token and its nonce, start the session."""
    ctx = request.app.state.orchestrator
    pending = unseal(ctx, request.cookies.get(LOGIN_COOKIE), LOGIN_TTL_S)
    try:
        if error:
            raise SignInError(f"the identity provider refused: {error_description or error}")
        if pending is None:
            raise SignInError("the sign-in took too long or was started in another browser")
        if not code or not state or not secrets.compare_digest(state, pending["state"]):
            raise SignInError("the answer of the identity provider does not match this "
                              "sign-in (state)")
        claims = _exchange(ctx, request, pending, code)
        who = ctx.authenticator.verifier.principal(claims)
    except SignInError as exc:
        response = web.render("error.html", request, 400, title="Sign-in failed",
                              message=str(exc), retry=f"{web.PREFIX}/signin")
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response
    session = Session.start(who)
    response = RedirectResponse(pending["next"], status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    response.set_cookie(SESSION_COOKIE, session.to_cookie(ctx), **cookie_options(request))
    return response


def _exchange(ctx, request: Request, pending: dict, code: str) -> dict:
    verifier = ctx.authenticator.verifier
    try:
        endpoint = verifier.discovery(pending["issuer"])["token_endpoint"]
    except (AuthError, KeyError) as exc:
        raise SignInError(f"the identity provider cannot be reached: {exc}") from exc
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": redirect_uri(request), "code_verifier": pending["verifier"],
            "client_id": client_id(ctx)}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Accept": "application/json"}
    secret = os.environ.get("ORCHESTRATOR_DASHBOARD_CLIENT_SECRET")
    if secret:
        pair = f"{client_id(ctx)}:{secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    call = urllib.request.Request(endpoint, data=urlencode(form).encode(), headers=headers,
                                  method="POST")
    try:
        with urllib.request.urlopen(call, timeout=verifier.timeout_s) as answer:  # noqa: S310
            tokens = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise SignInError(f"the identity provider refused the code ({exc.code}: "
                          f"{_oauth_error(exc)})") from exc
    except (OSError, ValueError) as exc:
        raise SignInError(f"the identity provider cannot be reached: {exc}") from exc
    if not isinstance(tokens, dict) or not tokens.get("id_token"):
        raise SignInError("the identity provider sent no ID token (is 'openid' a scope?)")
    try:
        claims = verifier.verify(tokens["id_token"], audience=client_id(ctx))
    except AuthError as exc:
        raise SignInError(f"the ID token is not valid: {exc}") from exc
    if str(claims.get("iss", "")).rstrip("/") != pending["issuer"].rstrip("/"):
        raise SignInError("the ID token comes from another issuer than the one asked")
    if not secrets.compare_digest(str(claims.get("nonce", "")), pending["nonce"]):
        raise SignInError("the ID token does not carry this sign-in's nonce")
    return claims


def _oauth_error(exc) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return "no details"
    return str(body.get("error_description") or body.get("error") or "no details")[:200]


@router.post("/logout", name="dashboard_logout")
async def logout(request: Request):
    session = web.current_session(request)
    form = await web.form_data(request)
    if session is not None and not session.csrf_ok(web.first(form, "csrf")):
        return web.render("error.html", request, 403, session=session, title="Forbidden",
                          message="The form was not sent from this dashboard.")
    response = web.render("signedout.html", request)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

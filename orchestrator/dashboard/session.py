"""The dashboard's browser session: an encrypted, signed cookie (Fernet with a key derived
from the server key, so every replica reads the others' cookies), holding who the user is
and a CSRF token; never a password or an OIDC token.

Two cookies: ``orch_session`` (the signed-in user, ``SESSION_HOURS`` long) and
``orch_login`` (the state, nonce and PKCE verifier of a login in progress, ten minutes)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from orchestrator import service
from orchestrator.api.auth import Principal

SESSION_COOKIE = "orch_session"
LOGIN_COOKIE = "orch_login"
LOGIN_TTL_S = 600
SESSION_HOURS = float(os.environ.get("ORCHESTRATOR_DASHBOARD_SESSION_HOURS", "8"))
_DERIVATION = b"orchestrator dashboard session v1"


def _server_key(ctx) -> bytes:
    if ctx.settings.secret_key:
        return ctx.settings.secret_key.encode()
    with open(service.data_dir() / "server.key", "rb") as handle:  # made by create_app
        return handle.read().strip()


def _fernet(ctx):
    fernet = ctx.cache.get("dashboard-fernet")
    if fernet is None:
        from cryptography.fernet import Fernet

        derived = hmac.new(_server_key(ctx), _DERIVATION, hashlib.sha256).digest()
        fernet = ctx.cache["dashboard-fernet"] = Fernet(base64.urlsafe_b64encode(derived))
    return fernet


def seal(ctx, value: dict) -> str:
    return _fernet(ctx).encrypt(json.dumps(value).encode()).decode("ascii")


def unseal(ctx, token: str | None, ttl_s: float) -> dict | None:
    """The cookie's value, or None when it is missing, forged, damaged or too old."""
    from cryptography.fernet import InvalidToken

    if not token:
        return None
    try:
        value = json.loads(_fernet(ctx).decrypt(token.encode("ascii"), ttl=int(ttl_s)))
    except (InvalidToken, ValueError, UnicodeError):
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Session:
    who: Principal
    csrf: str
    expires: float

    @classmethod
    def start(cls, who: Principal, expires: float | None = None) -> Session:
        limit = time.time() + SESSION_HOURS * 3600
        return cls(who, secrets.token_urlsafe(24), min(expires or limit, limit))

    def to_cookie(self, ctx) -> str:
        who = self.who
        return seal(ctx, {"sub": who.subject, "iss": who.issuer, "owner": who.owner,
                          "groups": sorted(who.groups), "admin": who.admin, "name": who.name,
                          "csrf": self.csrf, "exp": self.expires})

    @classmethod
    def from_cookie(cls, ctx, token: str | None) -> Session | None:
        data = unseal(ctx, token, SESSION_HOURS * 3600)
        if not data or float(data.get("exp", 0)) < time.time():
            return None
        try:
            who = Principal(subject=data["sub"], issuer=data["iss"], owner=data["owner"],
                            groups=frozenset(data["groups"]), admin=bool(data["admin"]),
                            via="oidc", name=data.get("name"))
        except (KeyError, TypeError):
            return None
        return cls(who, str(data["csrf"]), float(data["exp"]))

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf, str(submitted))


def cookie_options(request) -> dict:
    """HttpOnly, SameSite=Lax (the issuer's redirect back is a top-level GET), Secure
    behind HTTPS."""
    secure = request.url.scheme == "https" or \
        request.headers.get("x-forwarded-proto", "") == "https"
    return {"httponly": True, "samesite": "lax", "secure": secure, "path": "/"}

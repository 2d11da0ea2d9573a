"""An OpenID Connect issuer on loopback, for tests: its own RSA key, a discovery document,
a JWKS, and tokens signed with that key. It speaks the real protocol, so the service verifies
its tokens exactly as it verifies INDIGO-IAM's.

- ``issuer.token(sub, groups=..., audience=..., expires_in=...)`` mints an access token
  directly (the API tests);
- the authorization-code flow with PKCE (S256): ``GET /authorize`` shows a login form with
  the known users, ``POST /authorize`` redirects to ``redirect_uri`` with ``code`` and
  ``state``, ``POST /token`` exchanges the code (checking the ``code_verifier``) for an access
  token and an ID token (for browser tests of a dashboard);
- ``POST /token`` with ``grant_type=password`` (username/password of a known user) and
  ``client_credentials`` too.

Use as a context manager: ``with OIDCIssuer() as issuer: issuer.url``."""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse


@dataclass
class User:
    username: str
    password: str
    sub: str
    groups: list[str] = field(default_factory=list)
    email: str | None = None


class OIDCIssuer:
    def __init__(self, audience: str = "orchestrator", groups_claim: str = "groups"):
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.audience = audience
        self.groups_claim = groups_claim
        self.kid = uuid.uuid4().hex[:16]
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.users: dict[str, User] = {}
        self._codes: dict[str, dict] = {}
        self.requests: list[str] = []  # paths requested, for tests that count fetches
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> OIDCIssuer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="oidc-issuer")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OIDCIssuer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- users and tokens ---------------------------------------------------------------------
    def add_user(self, username: str, password: str = "secret", groups=(), sub=None) -> User:
        user = User(username, password, sub or uuid.uuid4().hex, list(groups),
                    f"{username}@example.org")
        self.users[username] = user
        return user

    def token(self, sub: str, *, groups=(), audience: str | None = "", expires_in: int = 3600,
              issuer: str | None = None, key=None, kid: str | None = None, **claims) -> str:
        """A signed access token. ``audience=""`` means the issuer's default audience, None
        none at all; ``issuer``/``key``/``kid`` forge tokens for negative tests."""
        import jwt

        now = int(time.time())
        body = {"iss": issuer or self.url, "sub": sub, "iat": now, "nbf": now - 1,
                "exp": now + expires_in, "jti": uuid.uuid4().hex, **claims}
        if groups:
            body[self.groups_claim] = list(groups)
        audience = self.audience if audience == "" else audience
        if audience is not None:
            body["aud"] = audience
        return jwt.encode(body, key or self._key, algorithm="RS256",
                          headers={"kid": kid or self.kid})

    def user_token(self, username: str, **kwargs) -> str:
        user = self.users[username]
        return self.token(user.sub, groups=user.groups, preferred_username=user.username,
                          email=user.email, **kwargs)

    # -- documents ----------------------------------------------------------------------------
    def discovery(self) -> dict:
        return {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                "userinfo_endpoint": f"{self.url}/userinfo",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "password",
                                          "client_credentials"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email", "groups"]}

    def jwks(self) -> dict:
        import jwt

        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    # -- the authorization-code flow ----------------------------------------------------------
    def _login_form(self, query: dict) -> str:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" '
                         f'value="{html.escape(v)}">' for k, v in query.items())
        return ("<!doctype html><html><head><title>Sign in</title></head><body>"
                "<h1>Sign in to the test issuer</h1><form method=post action=/authorize>"
                f"{hidden}<label for=username>Username</label>"
                "<input id=username name=username autocomplete=username>"
                "<label for=password>Password</label>"
                "<input id=password name=password type=password>"
                "<button type=submit>Sign in</button></form></body></html>")

    def _authorize(self, form: dict) -> tuple[int, dict, str]:
        user = self.users.get(form.get("username", ""))
        if user is None or user.password != form.get("password"):
            return 401, {}, self._login_form({k: v for k, v in form.items()
                                              if k not in ("username", "password")})
        if form.get("code_challenge_method", "S256") != "S256" or not form.get("code_challenge"):
            return 400, {}, "PKCE with S256 is required"
        code = secrets.token_urlsafe(24)
        self._codes[code] = {"user": user.username, "client_id": form.get("client_id"),
                             "redirect_uri": form.get("redirect_uri"),
                             "challenge": form["code_challenge"], "nonce": form.get("nonce")}
        query = urlencode({"code": code, "state": form.get("state", "")})
        return 302, {"Location": f"{form.get('redirect_uri')}?{query}"}, ""

    def _exchange(self, form: dict) -> tuple[int, dict]:
        grant = form.get("grant_type")
        if grant == "authorization_code":
            data = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if data is None or data["redirect_uri"] != form.get("redirect_uri") or \
                    digest.rstrip(b"=").decode() != data["challenge"]:
                return 400, {"error": "invalid_grant"}
            user = self.users[data["user"]]
            id_extra = {"nonce": data["nonce"]} if data["nonce"] else {}
            return 200, self._tokens(user, data["client_id"], id_extra)
        if grant == "password":
            user = self.users.get(form.get("username", ""))
            if user is None or user.password != form.get("password"):
                return 400, {"error": "invalid_grant"}
            return 200, self._tokens(user, form.get("client_id"), {})
        if grant == "client_credentials":
            client = form.get("client_id", "client")
            return 200, {"access_token": self.token(client), "token_type": "Bearer",
                         "expires_in": 3600}
        return 400, {"error": "unsupported_grant_type"}

    def _tokens(self, user: User, client_id: str | None, id_extra: dict) -> dict:
        return {"access_token": self.user_token(user.username), "token_type": "Bearer",
                "expires_in": 3600,
                "id_token": self.user_token(user.username, audience=client_id or self.audience,
                                            **id_extra)}


def _handler(issuer: OIDCIssuer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body, headers: dict | None = None,
                  content_type: str = "application/json") -> None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            parsed = parse_qs(self.rfile.read(length).decode())
            return {k: v[0] for k, v in parsed.items()}

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            issuer.requests.append(url.path)
            if url.path == "/.well-known/openid-configuration":
                self._send(200, issuer.discovery())
            elif url.path == "/jwks":
                self._send(200, issuer.jwks())
            elif url.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                self._send(200, issuer._login_form(query), content_type="text/html")
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            issuer.requests.append(url.path)
            if url.path == "/authorize":
                status, headers, body = issuer._authorize(self._form())
                self._send(status, body, headers, content_type="text/html")
            elif url.path == "/token":
                status, body = issuer._exchange(self._form())
                self._send(status, body)
            else:
                self._send(404, {"error": "not_found"})

    return Handler

"""Who is calling: OpenID Connect bearer tokens and long-lived API tokens.

An OIDC access token (a JWT) is accepted when its ``iss`` is one of the configured issuers
and its signature verifies against a key of that issuer's JWKS, found through the issuer's
discovery document (``/.well-known/openid-configuration``); ``exp``/``nbf``/``iat`` are
checked, and ``aud`` when an audience is configured. Groups come from the ``groups`` claim
(INDIGO-IAM) or ``wlcg.groups`` (WLCG profile, ``/cms/production`` style, leading slash
dropped). Administrators are members of the admin groups or listed subjects.

Groups and administrator rights are bound to an issuer: issuer B's ``physics`` is not issuer
A's ``physics``. A deployment's group is one of its owner's issuer unless it is qualified as
``ISSUER#group``; admin groups and subjects are configured qualified the same way, or
unqualified when one issuer alone is trusted (``admin_claims``). A group name alone never
crosses issuers.

API tokens (``orch_...``) are created by an authenticated user for CI; only their SHA-256 is
stored, and they carry the owner, groups and admin flag of the user who made them.

Front ends other than the REST API (a dashboard) reuse ``OIDCVerifier``: ``discovery()`` for
the authorization and token endpoints, ``verify(id_token, audience=client_id)`` for the ID
token of an authorization-code login, ``principal(claims)`` for the user."""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlparse

API_TOKEN_PREFIX = "orch_"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"]
DISCOVERY_TTL_S = 3600.0
VERIFIED_TTL_S = 60.0
VERIFIED_MAX = 10_000


class AuthError(Exception):
    """The caller could not be authenticated; the message says why (never the token)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``owner`` is what deployments record: the subject qualified
    by its issuer (unique across issuers)."""
    subject: str
    issuer: str | None
    owner: str
    groups: frozenset[str]
    admin: bool
    via: str = "oidc"  # "oidc" or "api-token"
    name: str | None = None

    def in_group(self, group: str, owner: str | None = None) -> bool:
        """Whether the caller is a member of ``group`` as a deployment of ``owner`` (default:
        the caller) names it: ``ISSUER#name`` is ``name`` of ISSUER, a plain name is one of
        the owner's issuer. Membership counts only for the caller's own issuer."""
        issuer, name = split_qualified(group)
        if issuer is None:
            issuer = issuer_of_owner(owner or self.owner)
        return issuer == issuer_of_owner(self.owner) and name in self.groups

    def can_see(self, owner: str, group: str | None) -> bool:
        return self.admin or owner == self.owner or (
            group is not None and self.in_group(group, owner))

    def to_dict(self) -> dict:
        return {"subject": self.subject, "issuer": self.issuer, "owner": self.owner,
                "groups": sorted(self.groups), "admin": self.admin, "via": self.via,
                "name": self.name}


def issuer_key(issuer: str) -> str:
    """How owners name an issuer: its host and path (``iam.example.org/realm``)."""
    parsed = urlparse(issuer.strip())
    return f"{parsed.netloc}{parsed.path.rstrip('/')}"


def owner_of(issuer: str, subject: str) -> str:
    return f"{subject}@{issuer_key(issuer)}"


def issuer_of_owner(owner: str) -> str:
    """The issuer key of an owner made by ``owner_of`` (a subject may hold '@' itself)."""
    return owner.rpartition("@")[2]


def split_qualified(name: str) -> tuple[str | None, str]:
    """``("iam.example.org", "admins")`` for ``https://iam.example.org/#admins``; ``(None,
    name)`` for a name no issuer URL qualifies (an issuer URL holds no '#')."""
    head, sep, tail = name.partition("#")
    if sep and "://" in head and tail:
        return issuer_key(head), tail.lstrip("/") or tail
    return None, name


def admin_claims(issuers, names) -> frozenset[tuple[str, str]]:
    """``{(issuer key, name)}`` of configured admin groups or subjects. A name given as
    ``ISSUER#name`` is bound to ISSUER (a trusted one); a plain name to the one trusted issuer,
    and refused (ValueError) when several are trusted: it would cross issuers."""
    keys = {issuer_key(i): i for i in issuers}
    bound = set()
    for name in names:
        issuer, plain = split_qualified(name)
        if issuer is None:
            if len(keys) > 1:
                raise ValueError(
                    f"the administrator {name!r} names no issuer and {len(keys)} issuers are "
                    f"trusted: write it as ISSUER#{name} (ISSUER one of {', '.join(issuers)})")
            issuer = next(iter(keys), "")
        elif issuer not in keys:
            raise ValueError(f"the administrator {name!r} names an issuer that is not trusted "
                             f"(trusted: {', '.join(issuers) or 'none'})")
        bound.add((issuer, plain))
    return frozenset(bound)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def _get_json(url: str, timeout: float) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


class OIDCVerifier:
    """Verifies JWTs from a list of trusted issuers (discovery and JWKS cached)."""

    def __init__(self, issuers, audience: str | None = None, *,
                 groups_claims=("groups", "wlcg.groups"), admin_groups=frozenset(),
                 admin_subjects=frozenset(), timeout_s: float = 5.0, leeway_s: float = 30.0):
        self.issuers = tuple(i.rstrip("/") for i in issuers)
        self.audience = audience
        self.groups_claims = tuple(groups_claims)
        self.admin_groups = admin_claims(self.issuers, admin_groups)
        self.admin_subjects = admin_claims(self.issuers, admin_subjects)
        self.timeout_s = timeout_s
        self.leeway_s = leeway_s
        self._discovery: dict[str, tuple[float, dict]] = {}
        self._jwks: dict[str, object] = {}
        self._lock = threading.Lock()

    def discovery(self, issuer: str) -> dict:
        """The issuer's discovery document (cached for an hour)."""
        issuer = issuer.rstrip("/")
        with self._lock:
            cached = self._discovery.get(issuer)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
        try:
            document = _get_json(f"{issuer}/.well-known/openid-configuration", self.timeout_s)
        except (OSError, ValueError) as exc:
            raise AuthError(f"the issuer {issuer} cannot be reached: {exc}") from exc
        if str(document.get("issuer", "")).rstrip("/") != issuer or "jwks_uri" not in document:
            raise AuthError(f"the discovery document of {issuer} names another issuer or no "
                            "jwks_uri")
        with self._lock:
            self._discovery[issuer] = (time.monotonic(), document)
        return document

    def _signing_key(self, issuer: str, token: str):
        import jwt

        with self._lock:
            client = self._jwks.get(issuer)
        if client is None:
            client = jwt.PyJWKClient(self.discovery(issuer)["jwks_uri"], cache_keys=True,
                                     lifespan=DISCOVERY_TTL_S, timeout=self.timeout_s)
            with self._lock:
                self._jwks[issuer] = client
        try:
            return client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"no key of {issuer} verifies the token: {exc}") from exc

    def verify(self, token: str, audience: str | None = None) -> dict:
        """The claims of a valid token; AuthError otherwise."""
        import jwt

        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the bearer token is not a JWT: {exc}") from exc
        issuer = str(unverified.get("iss", "")).rstrip("/")
        if issuer not in self.issuers:
            raise AuthError(f"tokens of issuer {issuer or '(none)'!r} are not accepted")
        key = self._signing_key(issuer, token)
        audience = audience or self.audience
        try:
            return jwt.decode(token, key, algorithms=ALGORITHMS, audience=audience,
                              issuer=unverified["iss"], leeway=self.leeway_s,
                              options={"require": ["exp", "iss", "sub"],
                                       "verify_aud": audience is not None})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"the token is not meant for this service (audience "
                            f"{audience!r} expected)") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is invalid: {exc}") from exc

    def groups(self, claims: dict) -> frozenset[str]:
        found: set[str] = set()
        for claim in self.groups_claims:
            value = claims.get(claim)
            if isinstance(value, str):
                value = value.split()
            if isinstance(value, list):
                found.update(str(g).lstrip("/") for g in value if str(g).strip("/"))
        return frozenset(found)

    def principal(self, claims: dict) -> Principal:
        issuer = str(claims["iss"]).rstrip("/")
        groups = self.groups(claims)
        subject = str(claims["sub"])
        key = issuer_key(issuer)
        admin = (key, subject) in self.admin_subjects or any(
            (key, group) in self.admin_groups for group in groups)
        return Principal(subject=subject, issuer=issuer, owner=owner_of(issuer, subject),
                         groups=groups, admin=admin, via="oidc",
                         name=claims.get("preferred_username") or claims.get("name"))


class VerifiedTokens:
    """Principals of recently verified OIDC tokens, keyed by the SHA-256 of the token (the
    token itself is not kept). An entry lives ``ttl_s`` at most and never past the token's
    ``exp``; the oldest entries go first when ``max_entries`` are held. A JWT cannot be
    revoked before it expires, so a cached verdict says what a fresh check would say, except
    that a key the issuer withdraws stops verifying tokens ``ttl_s`` later, not at once."""

    def __init__(self, ttl_s: float = VERIFIED_TTL_S, max_entries: int = VERIFIED_MAX):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8")).digest()

    def get(self, token: str) -> Principal | None:
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.time():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, token: str, principal: Principal, expires_at) -> None:
        until = min(time.time() + self.ttl_s, float(expires_at))
        if until <= time.time():
            return
        with self._lock:
            self._entries[self._key(token)] = (until, principal)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; AuthError otherwise."""
    if not authorization:
        raise AuthError("no bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return token


class Authenticator:
    """Bearer token -> Principal, for OIDC tokens (verified once, then remembered briefly:
    ``VerifiedTokens``) and the service's API tokens (looked up in the store every time, so
    a deleted one stops working at once on every replica)."""

    def __init__(self, verifier: OIDCVerifier, store):
        self.verifier = verifier
        self.store = store
        self.verified = VerifiedTokens()

    def remembered(self, authorization: str | None) -> Principal | None:
        """The caller if the header carries an OIDC token verified moments ago; None when it
        needs checking (no I/O: safe on the event loop)."""
        try:
            token = bearer_token(authorization)
        except AuthError:
            return None
        return None if token.startswith(API_TOKEN_PREFIX) else self.verified.get(token)

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if token.startswith(API_TOKEN_PREFIX):
            return self._api_token(token)
        found = self.verified.get(token)
        if found is None:
            claims = self.verifier.verify(token)
            found = self.verifier.principal(claims)
            self.verified.put(token, found, claims["exp"])
        return found

    def _api_token(self, token: str) -> Principal:
        record = self.store.api_token(token)
        if record is None:
            raise AuthError("unknown, revoked or expired API token")
        subject = record.owner.rsplit("@", 1)[0]
        return Principal(subject=subject, issuer=None, owner=record.owner,
                         groups=frozenset(record.groups), admin=record.admin,
                         via="api-token", name=record.name)

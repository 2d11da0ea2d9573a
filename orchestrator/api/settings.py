"""The service's settings, from arguments or the environment.

| variable | meaning |
| --- | --- |
| ``ORCHESTRATOR_DB`` | state database URL (default: the per-user SQLite file) |
| ``ORCHESTRATOR_SITES`` | site catalogue |
| ``ORCHESTRATOR_OIDC_ISSUERS`` | trusted issuer URLs, comma or space separated |
| ``ORCHESTRATOR_OIDC_AUDIENCE`` | the audience tokens must carry (unset: not checked) |
| ``ORCHESTRATOR_ADMIN_GROUPS`` | groups whose members are administrators, ``ISSUER#group`` \
(a plain name only when one issuer is trusted; see ``auth.admin_claims``) |
| ``ORCHESTRATOR_ADMIN_SUBJECTS`` | ``sub`` values of administrators, ``ISSUER#sub`` likewise |
| ``ORCHESTRATOR_SECRET_KEY`` | Fernet key sealing credentials and secret inputs |
| ``ORCHESTRATOR_WORKERS`` | worker threads of this replica (0: accept work, run none) |
| ``ORCHESTRATOR_WORK_STALE_S`` | a running work item without heartbeat this long is resumed |
| ``ORCHESTRATOR_WORKERS_PROCESS`` | ``1``: the workers run in a child process of the server (the \
default, except for an in-memory database); ``0``: threads of the server process |
| ``ORCHESTRATOR_CALLBACK_HOSTS`` | the only hosts callback URLs may name (names, ``*.suffix``, \
IP networks); unset: any host whose addresses are all public (see ``api.callbacks``) |
| ``ORCHESTRATOR_IMPORT_HOSTS`` | the only hosts remote TOSCA imports are fetched from \
(https, public addresses; names or ``*.suffix``, comma or space separated); unset or empty: \
nothing is fetched (imports come from the template, the bundled types and the import maps) |
| ``ORCHESTRATOR_WORKERS_NICE`` | how much lower the worker process's CPU priority is (default 5, \
so the API's requests go first when both want the CPU; 0: the same) |
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field


def _words(value: str | None) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[,\s]+", value or "") if w)


def _flag(value: str | None) -> bool | None:
    if value is None or not value.strip():
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServiceSettings:
    db: str | None = None
    sites: str | None = None
    issuers: tuple[str, ...] = ()
    audience: str | None = None
    admin_groups: frozenset[str] = frozenset()
    admin_subjects: frozenset[str] = frozenset()
    groups_claims: tuple[str, ...] = ("groups", "wlcg.groups")
    secret_key: str | None = None
    workers: int = 4
    work_stale_s: float = 60.0
    heartbeat_s: float = 5.0
    poll_s: float = 0.5
    step_timeout_s: float = 1800.0
    public_url: str | None = None
    # None: a child process unless the database is in memory (see api.workers).
    workers_process: bool | None = None
    workers_nice: int = 5
    callback_hosts: tuple[str, ...] = ()
    import_hosts: tuple[str, ...] = ()  # empty: remote imports are never fetched
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> ServiceSettings:
        env = os.environ
        values = dict(
            db=env.get("ORCHESTRATOR_DB") or None,
            sites=env.get("ORCHESTRATOR_SITES") or None,
            issuers=_words(env.get("ORCHESTRATOR_OIDC_ISSUERS")),
            audience=env.get("ORCHESTRATOR_OIDC_AUDIENCE") or None,
            admin_groups=frozenset(_words(env.get("ORCHESTRATOR_ADMIN_GROUPS"))),
            admin_subjects=frozenset(_words(env.get("ORCHESTRATOR_ADMIN_SUBJECTS"))),
            secret_key=env.get("ORCHESTRATOR_SECRET_KEY") or None,
            workers=int(env.get("ORCHESTRATOR_WORKERS", "4")),
            work_stale_s=float(env.get("ORCHESTRATOR_WORK_STALE_S", "60")),
            workers_process=_flag(env.get("ORCHESTRATOR_WORKERS_PROCESS")),
            workers_nice=int(env.get("ORCHESTRATOR_WORKERS_NICE", "5")),
            callback_hosts=_words(env.get("ORCHESTRATOR_CALLBACK_HOSTS")),
            import_hosts=_words(env.get("ORCHESTRATOR_IMPORT_HOSTS")),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_json(self) -> str:
        """The settings as JSON (for the worker process; it holds the secret key: never log
        it, pass it through a pipe)."""
        return json.dumps({f.name: sorted(v) if isinstance(v, frozenset) else v
                           for f in dataclasses.fields(self)
                           for v in [getattr(self, f.name)]})

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        values = json.loads(text)
        for name in ("issuers", "groups_claims", "callback_hosts", "import_hosts"):
            values[name] = tuple(values.get(name) or ())
        for name in ("admin_groups", "admin_subjects"):
            values[name] = frozenset(values[name])
        return cls(**values)

"""Secrets at rest and in logs: users' cloud credentials and secret inputs are sealed with
the server's Fernet key before they reach the database, and every value unsealed in this
process is masked in log records (the Sealer itself is ``orchestrator.sealing``, shared
with the core, which seals outputs computed from secrets).

The key comes from ``ORCHESTRATOR_SECRET_KEY`` (every replica of a service needs the same
one), else from ``<data dir>/server.key``, created on first use readable by its owner only."""
from __future__ import annotations

import logging

from orchestrator.sealing import (  # noqa: F401  (the service's names for them)
    _REDACTOR,
    MASK,
    Redactor,
    Sealer,
    SealingError,
    redactor,
)


def install_redaction(*logger_names: str) -> None:
    for name in ("", *logger_names):
        for handler in logging.getLogger(name).handlers:
            if _REDACTOR not in handler.filters:
                handler.addFilter(_REDACTOR)


class StoredKeys:
    """The deployments' SSH key pairs in the state database, sealed: the service's key vault
    (``orchestrator.sshkeys.KeyVault``), so that every replica reaches a deployment's
    servers with the same key."""

    def __init__(self, store, sealer: Sealer):
        self.store, self.sealer = store, sealer

    def load(self, deployment_id: str) -> tuple[str, str] | None:
        sealed = self.store.sealed_deployment_key(deployment_id)
        return None if sealed is None else self._pair(sealed)

    def save(self, deployment_id: str, private: str, public: str) -> tuple[str, str]:
        sealed = self.sealer.seal({"private": private, "public": public})
        return self._pair(self.store.put_deployment_key(deployment_id, sealed))

    def _pair(self, sealed: str) -> tuple[str, str]:
        data = self.sealer.open(sealed)
        return data["private"], data["public"]

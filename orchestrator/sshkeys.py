"""A deployment's SSH key pair (ed25519, no passphrase): generated on first use into the
deployment's folder (``ssh/id_ed25519``, private half readable by the user only) and, where
a key vault is given, shared through it. The service's vault keeps the pair sealed in the
state database, so that every replica reaches the deployment's servers with the same key:
a deployment begun by one replica and resumed, updated or reconfigured by another."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Protocol

from orchestrator.errors import OrchestratorError

PRIVATE = "id_ed25519"
PUBLIC = "id_ed25519.pub"


class KeyVault(Protocol):
    def load(self, deployment_id: str) -> tuple[str, str] | None:
        """The stored (private, public) pair, or None."""

    def save(self, deployment_id: str, private: str, public: str) -> tuple[str, str]:
        """Store the pair unless one is stored already; the stored pair."""


def deployment_key(folder: Path, deployment_id: str, vault: KeyVault | None = None) -> str:
    """The deployment's public key (one line). ``folder`` is the deployment's ``ssh``
    folder; its files are (re)written from the vault's pair when they differ."""
    local = _read(folder)
    stored = vault.load(deployment_id) if vault is not None else None
    if stored is None:
        local = local or _generate(folder, deployment_id)
        stored = vault.save(deployment_id, *local) if vault is not None else local
    if stored != local:  # the vault's pair (another replica's, or the first one stored)
        _write(folder, stored)
    return stored[1].strip()


def _read(folder: Path) -> tuple[str, str] | None:
    try:
        return (folder / PRIVATE).read_text(), (folder / PUBLIC).read_text()
    except OSError:
        return None


def _write(folder: Path, pair: tuple[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = folder / PRIVATE
    with contextlib.suppress(FileNotFoundError):
        private.unlink()
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pair[0])
    (folder / PUBLIC).write_text(pair[1])


def _generate(folder: Path, deployment_id: str) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in (PRIVATE, PUBLIC):  # a half-written pair from a killed run
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"orchestrator-{deployment_id[:12]}", "-f", str(folder / PRIVATE)],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OrchestratorError(f"cannot generate the deployment's SSH key with "
                                f"ssh-keygen (install openssh-client): {exc}") from exc
    return (folder / PRIVATE).read_text(), (folder / PUBLIC).read_text()

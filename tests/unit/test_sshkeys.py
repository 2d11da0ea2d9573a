"""A deployment's SSH key shared between replicas through the state database
(orchestrator.sshkeys with the service's sealed vault, orchestrator.api.sealing.StoredKeys):
two replicas, each with its own data folder, on one database."""
from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from orchestrator import sshkeys
from orchestrator.api.sealing import Sealer, StoredKeys
from orchestrator.state import Store


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def test_a_second_replica_uses_the_key_the_first_one_made(tmp_path, store):
    vault = StoredKeys(store, Sealer(Fernet.generate_key()))
    dep = store.create_deployment("shared")
    first, second = tmp_path / "replica-a" / "ssh", tmp_path / "replica-b" / "ssh"
    public = sshkeys.deployment_key(first, dep.id, vault)
    assert public.startswith("ssh-ed25519 ") and public.endswith(f"orchestrator-{dep.id[:12]}")
    sealed = store.sealed_deployment_key(dep.id)
    assert sealed and "PRIVATE KEY" not in sealed  # sealed, never in clear
    assert sshkeys.deployment_key(second, dep.id, vault) == public
    assert (second / "id_ed25519").read_text() == (first / "id_ed25519").read_text()
    assert stat.S_IMODE((second / "id_ed25519").stat().st_mode) == 0o600
    # the key outlives a replica's data folder, and goes with the deployment
    (first / "id_ed25519").unlink()
    assert sshkeys.deployment_key(first, dep.id, vault) == public
    store.delete_deployment(dep.id)
    assert store.sealed_deployment_key(dep.id) is None


def test_two_replicas_making_a_key_at_once_end_with_the_first_stored(tmp_path, store):
    vault = StoredKeys(store, Sealer(Fernet.generate_key()))
    dep = store.create_deployment("race")
    assert vault.save(dep.id, "private-a", "public-a") == ("private-a", "public-a")
    assert vault.save(dep.id, "private-b", "public-b") == ("private-a", "public-a")
    with pytest.raises(LookupError):
        vault.save("0" * 32, "p", "q")


def test_a_key_made_before_the_vault_is_kept_and_stored(tmp_path, store):
    vault = StoredKeys(store, Sealer(Fernet.generate_key()))
    dep = store.create_deployment("older")
    folder = tmp_path / "ssh"
    public = sshkeys.deployment_key(folder, dep.id)  # the CLI: no vault, files only
    assert store.sealed_deployment_key(dep.id) is None
    assert sshkeys.deployment_key(folder, dep.id, vault) == public
    assert vault.load(dep.id)[1].strip() == public

"""Two replicas with separate data directories on one database, on real containers: a
deployment made through one is updated through the other, whose Ansible run logs into the
node with the deployment's key from the state database (it would be refused with a key of
its own)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from orchestrator.state import Store
from tests import engine_support as es
from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support

if not shutil.which("podman") and not os.environ.get("CI"):
    pytest.skip("podman is not installed (run .ci/containers.sh); in CI these tests run",
                allow_module_level=True)
pytest.importorskip("ansible_runner", reason="the ansible extra is not installed")

TEMPLATE = support.template_text("""topology_template:
  inputs:
    users: {type: list, default: [{name: alice}]}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities: {host: {properties: {num_cpus: 1}}}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
      interfaces:
        Standard:
          configure:
            implementation: playbooks/base.yml
            inputs: {os_users: {get_input: users}}
""")


def _in_node(deployment_id: str, *command: str) -> str:
    names = subprocess.run(["podman", "ps", "--filter",
                            f"label=orchestrator-deployment={deployment_id}", "--format",
                            "{{.Names}}"], capture_output=True, text=True, check=True
                           ).stdout.split()
    assert len(names) == 1, names
    return subprocess.run(["podman", "exec", names[0], *command], capture_output=True,
                          text=True).stdout


def test_a_replica_updates_a_deployment_another_made(tmp_path):
    db = f"sqlite:///{tmp_path / 'state.db'}"
    sites = es.write_sites(tmp_path, {"name": "local", "provider": "local"})
    with OIDCIssuer() as issuer:
        token = issuer.token("alice")
        first = support.start_server(tmp_path, db=db, sites=sites, issuer=issuer.url,
                                     name="first", workers=1)
        second = None
        deployment_id = None
        try:
            with support.client(first, token) as api:
                made = api.post("/v1/deployments", json={"name": "keys", "template": TEMPLATE})
                assert made.status_code == 202, made.text
                deployment_id = made.json()["id"]
                assert support.wait_for(api, deployment_id, timeout_s=180)["status"] == \
                    "deployed"
            first.stop()
            assert "alice" in _in_node(deployment_id, "getent", "passwd", "alice")
            second = support.start_server(tmp_path, db=db, sites=sites, issuer=issuer.url,
                                          name="second", workers=1)
            with support.client(second, token) as api:
                patched = api.patch(f"/v1/deployments/{deployment_id}",
                                    json={"inputs": {"users": [{"name": "bob"}]}})
                assert patched.status_code == 202, patched.text
                done = support.wait_for(api, deployment_id, timeout_s=180)
                assert done["status"] == "deployed", done
                assert "bob" in _in_node(deployment_id, "getent", "passwd", "bob")
                keys = [tmp_path / f"{name}-data" / "orchestrator" / "deployments" /
                        deployment_id / "ssh" / "id_ed25519" for name in ("first", "second")]
                assert keys[0].read_text() == keys[1].read_text()
                with Store(db) as store:
                    assert store.sealed_deployment_key(deployment_id)
                assert api.delete(f"/v1/deployments/{deployment_id}").status_code == 202
                support.wait_for(api, deployment_id, statuses=("deleted",), timeout_s=120)
                with Store(db) as store:  # the key goes with the deployment
                    assert store.sealed_deployment_key(deployment_id) is None
        finally:
            for server in (first, second):
                if server is not None:
                    server.stop()
            if deployment_id is not None:  # after a failure: nothing of ours is left
                label = f"label=orchestrator-deployment={deployment_id}"
                subprocess.run(["podman", "rm", "-f", "--filter", label], capture_output=True)
                subprocess.run(["podman", "network", "prune", "-f", "--filter", label],
                               capture_output=True)

"""Reaching what was deployed: `orchestrator ssh` and `orchestrator ssh-config` as a user
runs them, against servers of the built-in local site (containers with sshd), and the
jump host through which a server with only a private address is reached."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from orchestrator import access
from orchestrator.errors import OrchestratorError
from tests.conftest import FIXTURES, ROOT
from tests.fixtures.roles.deployed import require_podman_and_ansible

TEMPLATE = str(FIXTURES / "local" / "cluster.yaml")


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    require_podman_and_ansible()
    tmp = tmp_path_factory.mktemp("access")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"),
           "XDG_CONFIG_HOME": str(tmp / "config")}
    env.pop("ORCHESTRATOR_URL", None)

    def run(*args, **kwargs):
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300,
                              check=False, **kwargs)

    deployed = run("deploy", TEMPLATE, "--name", "trio", "--yes")
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    yield run, tmp
    assert run("delete", "trio", "--yes").returncode == 0


def test_ssh_runs_a_command_on_the_server_named_and_passes_its_exit_status(cli):
    run, _ = cli
    done = run("ssh", "trio", "worker/1", "--", "hostname")
    assert done.returncode == 0 and done.stdout.strip() == "worker-1", done.stderr
    assert run("ssh", "trio", "front", "--", "exit", "3").returncode == 3


def test_ssh_says_which_servers_there_are(cli):
    run, _ = cli
    ambiguous = run("ssh", "trio", "--", "true")
    assert ambiguous.returncode == 1
    assert "front/0, worker/0, worker/1" in ambiguous.stderr
    unknown = run("ssh", "trio", "head", "--", "true")
    assert unknown.returncode == 1 and "no server 'head'" in unknown.stderr


def test_ssh_config_is_an_openssh_config(cli):
    run, tmp = cli
    config = tmp / "ssh_config"
    text = run("ssh-config", "trio")
    assert text.returncode == 0, text.stderr
    config.write_text(text.stdout)
    done = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "trio-worker-0",
                           "hostname"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.stdout.strip() == "worker-0", done.stderr
    servers = json.loads(run("ssh-config", "trio", "--format", "json").stdout)["servers"]
    assert [(s["node"], s["index"]) for s in servers] == [("front", 0), ("worker", 0),
                                                          ("worker", 1)]
    assert all(s["host"] == "127.0.0.1" and s["user"] == "root" for s in servers)


def _row(node, index, **facts):
    return SimpleNamespace(node=node, index=index, kind="compute", status="active",
                           attributes=facts)


def test_a_private_server_is_reached_through_the_deployments_reachable_one(tmp_path):
    (tmp_path / "id_ed25519").write_text("key")
    rows = [_row("worker", 0, private_address="10.0.0.5"),
            _row("front", 0, public_address="192.0.2.10", ssh_port=2222, ssh_user="cloudy",
                 private_address="10.0.0.4")]
    front, worker = access.ssh_targets("demo", rows, tmp_path)
    assert (front.host, front.port, front.jump) == ("192.0.2.10", 2222, None)
    assert (worker.host, worker.private_address, worker.jump) == \
        (None, "10.0.0.5", "cloudy@192.0.2.10:2222")
    argv = access.ssh_command(worker, ("uptime",))
    assert argv[-3:] == ["root@10.0.0.5", "--", "uptime"]
    hop = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "-W %h:%p cloudy@192.0.2.10" in hop and "-p 2222" in hop
    assert f"IdentityFile={tmp_path / 'id_ed25519'}" in hop  # the jump uses the key too
    config = access.ssh_config([front, worker])
    assert "Host demo-worker-0\n  HostName 10.0.0.5" in config and "ProxyCommand ssh" in config


def test_a_deployment_without_reachable_servers_says_so():
    with pytest.raises(OrchestratorError, match="no server that SSH can reach"):
        access.choose([], None)

"""Day-two changes through the real CLI on simulated sites: update keeps what the
deployment was made with, plan --name shows no phantom scale-in, deploy onto a taken name
refuses, scale (up, down, --remove), secret inputs asked again, and the simulated cloud
kept across commands under the data folder."""
import json
import os
import subprocess
import sys

import pytest

from tests import engine_support as es
from tests.conftest import ROOT

GROUP = """
topology_template:
  inputs:
    worker_count: {type: integer, default: 2}
    worker_cpus: {type: integer, default: 2}
    admin_password: {type: string, required: false}
  node_templates:
    head:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2}}
        os: {properties: {distribution: ubuntu}}
    worker:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: {get_input: worker_cpus}}}
        scalable: {properties: {count: {get_input: worker_count}}}
  outputs:
    password: {value: {get_input: admin_password}}
"""


@pytest.fixture
def env(tmp_path):
    """The CLI on one simulated site that names no state_file: its cloud lives where the
    CLI keeps it by default, under the data folder."""
    sites = es.write_sites(tmp_path, es.site("a"))
    template = es.write_template(tmp_path, GROUP)
    environ = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"),
               "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "--db",
             f"sqlite:///{tmp_path / 'state.db'}", "--sites", sites, *args],
            capture_output=True, text=True, cwd=ROOT, timeout=120, env=environ,
            stdin=subprocess.DEVNULL)

    return cli, template, tmp_path


def _status(cli, name: str) -> dict:
    shown = cli("status", name, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _instances(cli, name: str, node: str) -> list[int]:
    return sorted(r["index"] for r in _status(cli, name)["resources"]
                  if r["node"] == node and r["kind"] == "compute" and r["status"] != "deleted")


def _summary(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["summary"]


def test_the_simulated_cloud_is_kept_across_commands(env):
    """deploy, then plan in another process: nothing drifted, nothing to do."""
    cli, template, tmp = env
    deployed = cli("deploy", template, "--name", "demo", "--yes")
    assert deployed.returncode == 0, deployed.stderr
    planned = cli("plan", template, "--name", "demo")
    assert planned.returncode == 0, planned.stderr
    assert "No changes" in planned.stdout and "outside the orchestrator" not in planned.stdout
    assert list((tmp / "data" / "orchestrator" / "simulated").glob("a-*.json"))


def test_update_with_set_only_keeps_the_other_inputs(env):
    """The issue's story: scale 3 stays 3 through an update of another input, through
    `plan --name` and through an update without the template."""
    cli, template, _ = env
    assert cli("deploy", template, "--name", "g", "--set", "worker_count=2",
               "--yes").returncode == 0
    raised = cli("update", "g", template, "--set", "worker_count=3", "--yes")
    assert raised.returncode == 0, raised.stderr
    assert _instances(cli, "g", "worker") == [0, 1, 2]
    for planned in (cli("plan", template, "--name", "g", "--format", "json"),
                    cli("plan", "--name", "g", "--format", "json")):
        assert _summary(planned)["delete"] == 0
    updated = cli("update", "g", "--set", "worker_cpus=8", "--yes", "--format", "json")
    assert updated.returncode == 0, updated.stderr
    inputs = json.loads(updated.stdout)["deployment"]["inputs"]
    assert inputs["worker_count"] == 3 and inputs["worker_cpus"] == 8
    assert _instances(cli, "g", "worker") == [0, 1, 2]
    again = cli("update", "g", "--yes", "--format", "json")  # nothing given: nothing changes
    assert again.returncode == 0 and json.loads(again.stdout)["changes"] is False


def test_deploy_onto_an_existing_name_refuses_without_update(env):
    cli, template, _ = env
    assert cli("deploy", template, "--name", "taken", "--set", "worker_count=3",
               "--yes").returncode == 0
    refused = cli("deploy", template, "--name", "taken", "--set", "worker_cpus=8", "--yes")
    assert refused.returncode == 1
    assert "exists already" in refused.stderr and "orchestrator update taken" in refused.stderr
    assert _status(cli, "taken")["deployment"]["inputs"]["worker_cpus"] == 2
    updated = cli("deploy", template, "--name", "taken", "--set", "worker_cpus=8", "--update",
                  "--yes", "--format", "json")
    assert updated.returncode == 0, updated.stderr
    inputs = json.loads(updated.stdout)["deployment"]["inputs"]
    assert inputs["worker_cpus"] == 8 and inputs["worker_count"] == 3


def test_scale_a_fixed_count_up_down_and_remove_chosen_instances(env):
    """es.cluster's worker has a fixed count (2): scale overrides it, kept by later plans
    and updates; --remove picks the instances that go."""
    cli, _, tmp = env
    template = es.write_template(tmp, es.cluster(workers=2), "cluster.yaml")
    assert cli("deploy", template, "--name", "c", "--yes").returncode == 0
    refused = cli("scale", "c", "worker", "3")  # a plan, confirmed: no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    up = cli("scale", "c", "worker", "3", "--yes")
    assert up.returncode == 0, up.stderr
    assert "+ create compute worker[2]" in up.stdout
    assert _instances(cli, "c", "worker") == [0, 1, 2]
    assert _summary(cli("plan", "--name", "c", "--format", "json"))["delete"] == 0
    assert cli("update", "c", "--yes").stdout.strip().endswith("Nothing to do.")
    down = cli("scale", "c", "worker", "1", "--remove", "0", "--yes")
    assert down.returncode == 0, down.stderr
    assert "- delete compute worker[0]" in down.stdout
    assert _instances(cli, "c", "worker") == [1]
    assert _summary(cli("plan", "--name", "c", "--format", "json"))["create"] == 0
    unknown = cli("scale", "c", "worker", "0", "--remove", "7", "--yes")
    assert unknown.returncode == 1 and "no instance 7" in unknown.stderr
    nothing = cli("scale", "c", "nope", "2", "--yes")
    assert nothing.returncode == 1 and "no server node 'nope'" in nothing.stderr


def test_scale_a_count_taken_from_an_input_sets_that_input(env):
    cli, template, _ = env
    assert cli("deploy", template, "--name", "s", "--yes").returncode == 0
    up = cli("scale", "s", "worker", "4", "--yes", "--format", "json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["deployment"]["inputs"]["worker_count"] == 4
    down = cli("scale", "s", "worker", "2", "--remove", "1", "--remove", "2", "--yes")
    assert down.returncode == 0, down.stderr
    assert _instances(cli, "s", "worker") == [0, 3]
    assert _status(cli, "s")["deployment"]["inputs"]["worker_count"] == 2
    assert _summary(cli("plan", "--name", "s", "--format", "json"))["delete"] == 0


def test_secret_inputs_are_needed_again_and_never_stored(env):
    cli, template, tmp = env
    secret = "hunter2-never-stored"
    made = cli("deploy", template, "--name", "sec", "--set", f"admin_password={secret}",
               "--yes")
    assert made.returncode == 0, made.stderr
    assert all(secret.encode() not in path.read_bytes() for path in tmp.glob("state.db*"))
    refused = cli("update", "sec", "--set", "worker_count=3", "--yes")
    assert refused.returncode == 2
    assert "admin_password" in refused.stderr and "--set" in refused.stderr
    assert cli("plan", "--name", "sec").returncode == 2
    given = cli("update", "sec", "--set", "worker_count=3", "--set",
                f"admin_password={secret}", "--yes")
    assert given.returncode == 0, given.stderr
    assert _instances(cli, "sec", "worker") == [0, 1, 2]


def test_a_terminal_is_asked_for_the_secret_inputs_without_echo(env):
    import pty

    cli, template, tmp = env
    secret = "typed-secret-42"
    assert cli("deploy", template, "--name", "tty", "--set", f"admin_password={secret}",
               "--yes").returncode == 0
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.environ.update(XDG_DATA_HOME=str(tmp / "data"), XDG_CONFIG_HOME=str(tmp / "config"))
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "orchestrator", "--db",
                                  f"sqlite:///{tmp / 'state.db'}", "--sites",
                                  str(tmp / "sites.yaml"), "update", "tty", "--set",
                                  "worker_count=1", "--yes"])
    seen = b""
    while b"admin_password" not in seen:
        seen += os.read(fd, 1024)
    os.write(fd, secret.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert secret.encode() not in seen  # not echoed
    assert b"Deployment 'tty' deployed." in seen
    assert _instances(cli, "tty", "worker") == [0]
